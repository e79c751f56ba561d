"""The search: synonyms, partial terms, FAQ before passages, confidence decisions, reloads, the dev set."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from content.loader import DEFAULT_ROOT, ContentError, load_valid_content
from content.search import (
    ACCEPT_BIAS,
    ACCEPT_WEIGHTS,
    ANSWER_THRESHOLD,
    ANSWERED,
    OUT_OF_SCOPE,
    UNSURE,
    IndexHolder,
    QaIndex,
)

REPO = Path(__file__).resolve().parents[2]
# (top-1, out-of-scope declined) each evaluation set reached (bench/qa_eval.py), less a little room for
# content edits; raise them as the search improves, never lower them to make a change pass.
FLOORS = {"dev": (0.99, 0.98), "holdout": (0.99, 0.98), "holdout10": (0.96, 0.92), "holdout11": (0.98, 0.96),
          "holdout12": (0.97, 0.94), "holdout13": (0.99, 0.98), "holdout14": (0.99, 0.98),
          "holdout15": (0.95, 0.97), "holdout16": (0.99, 0.95), "holdout17": (0.97, 0.98), "holdout18": (0.99, 0.99),
          "holdout19": (0.99, 0.99), "holdout20": (0.98, 0.98), "holdout21": (0.99, 0.99), "holdout22": (0.98, 0.93),
          "holdout23": (0.98, 0.98), "holdout24": (0.97, 0.94), "holdout25": (0.98, 0.98),
          "holdout26": (0.98, 0.98),
          "holdout2": (0.99, 0.98), "holdout3": (0.95, 0.98),
          "holdout4": (0.99, 0.98), "holdout5": (0.99, 0.98), "holdout6": (0.99, 0.98),
          "holdout7": (0.99, 0.98), "holdout8": (0.99, 0.99), "holdout9": (0.99, 0.98),
          "holdout_dictated": (0.98, 0.98), "holdout_dictated2": (0.98, 0.93),
          "holdout_dictated3": (0.99, 0.98), "holdout_dictated4": (0.98, 0.98),
          "holdout_dictated5": (0.98, 0.98), "holdout_dictated6": (0.99, 0.98),
          "holdout_dictated7": (0.98, 0.98), "holdout_dictated8": (0.98, 0.96),
          "holdout_dictated9": (0.98, 0.98), "holdout_dictated10": (0.95, 0.92),
          "holdout_dictated11": (0.98, 0.98), "holdout_dictated12": (0.97, 0.98),
          "holdout_dictated13": (0.96, 0.98), "holdout_dictated14": (0.98, 0.94),
          "holdout_dictated15": (0.97, 0.96), "holdout_dictated16": (0.97, 0.96),
          "holdout_dictated17": (0.97, 0.96), "holdout_dictated18": (0.98, 0.98),
          "holdout_dictated19": (0.99, 0.98), "holdout_dictated20": (0.97, 0.98),
          "holdout_dictated21": (0.97, 0.96)}
# Wrong answers (an in-domain question answered with another entry) each set may have at most: a wrong answer
# about dues or membership is worse than none (issue 17's goal on the dictated set: 2 %).
WRONG_CEILINGS = {"dev": 0.005, "holdout": 0.004, "holdout10": 0.014, "holdout11": 0.01, "holdout12": 0.014,
                  "holdout13": 0.005, "holdout14": 0.005, "holdout15": 0.027, "holdout16": 0.009,
                  "holdout17": 0.009, "holdout18": 0.005, "holdout2": 0.007,
                  "holdout3": 0.012, "holdout4": 0.003, "holdout5": 0.009, "holdout6": 0.004,
                  "holdout7": 0.005, "holdout8": 0.005, "holdout9": 0.005, "holdout_dictated": 0.011,
                  "holdout_dictated2": 0.012, "holdout_dictated3": 0.007, "holdout_dictated4": 0.013,
                  "holdout_dictated5": 0.012, "holdout_dictated6": 0.006,
                  "holdout_dictated7": 0.012, "holdout_dictated8": 0.013, "holdout_dictated9": 0.019,
                  "holdout_dictated10": 0.037, "holdout_dictated11": 0.019, "holdout_dictated12": 0.024,
                  "holdout_dictated13": 0.025, "holdout_dictated14": 0.013,
                  "holdout_dictated15": 0.013, "holdout_dictated16": 0.019,
                  "holdout_dictated17": 0.013, "holdout_dictated18": 0.019,
                  "holdout_dictated19": 0.007, "holdout_dictated20": 0.019,
                  "holdout_dictated21": 0.019,
                  "holdout19": 0.005, "holdout20": 0.009, "holdout21": 0.005, "holdout22": 0.005, "holdout23": 0.009,
                  "holdout24": 0.014, "holdout25": 0.005, "holdout26": 0.005}

FAQ = '''
[[faq]]
id = "dues-rate"
question = "在职党员党费按什么标准交？"
phrasings = ["工资三千交多少党费", "党费比例是多少", "每月党费按工资的百分之几交"]
answer = "按每月税后工资：3000元以下0.5%，3000至5000元1%，5000至10000元1.5%，10000元以上2%。"
source = "关于中国共产党党费收缴、使用和管理的规定"
tags = ["党费"]
local = false

[[faq]]
id = "dues-farmer"
question = "农民党员交多少党费？"
phrasings = ["种地的党员党费怎么交", "农村党员党费标准", "务农党员每月交多少党费"]
answer = "农民党员每月交纳党费0.2元至1元；规定只给了这个范围，具体数额由支部按本地做法确定。"
source = "关于中国共产党党费收缴、使用和管理的规定"
tags = ["党费"]
local = false

[[faq]]
id = "dues-missing"
question = "不交党费会怎么样？"
phrasings = ["半年没交党费有事吗", "长期不缴纳党费怎么处理", "忘了交党费要紧吗"]
answer = "没有正当理由连续六个月不交纳党费，就被认为是自行脱党。"
source = "中国共产党章程"
article = "第九条"
tags = ["党费"]
local = false

[[faq]]
id = "visit-five"
question = "五必访是哪五种情况？"
phrasings = ["什么时候要上门看望党员", "五必访指什么", "哪些情况要走访慰问"]
answer = "重大节日、生病住院、遭遇灾害或意外、家中有人病逝、生活工作有困难时，支部上门走访。"
source = "农村基层党建工作常见做法"
tags = ["关怀"]
local = true

[[faq]]
id = "join-apply"
question = "怎么申请发展党员？"
phrasings = ["我想写入党申请书", "入党申请交给谁", "年轻人想入党找谁"]
answer = "年满十八岁的公民可以向工作、学习所在单位的党组织递交入党申请书。"
source = "中国共产党发展党员工作细则"
tags = ["发展党员"]
local = false
'''

DOC = '''+++
id = "sanhui-yike"
title = "三会一课怎么开"
source = "中国共产党支部工作条例（试行）"
tags = ["三会一课"]
+++
## 支部党员大会
支部党员大会一般每季度召开一次，有表决权的党员过半数到会方可开会。

## 支委会
支委会一般每月召开一次，半数以上委员到会方可开会。
'''


def write_sample(root: Path) -> Path:
    (root / "faq").mkdir(parents=True)
    (root / "docs").mkdir()
    shutil.copy(DEFAULT_ROOT / "sources.toml", root / "sources.toml")
    (root / "faq" / "sample.toml").write_text(FAQ, encoding="utf-8")
    (root / "docs" / "sanhui-yike.md").write_text(DOC, encoding="utf-8")
    (root / "synonyms.toml").write_text('[synonyms]\n缴纳党费 = ["交党费", "缴党费"]\n发展党员 = ["入党"]\n', encoding="utf-8")
    (root / "dictionary.txt").write_text("五必访 100 n\n三会一课 100 n\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> QaIndex:
    return QaIndex(load_valid_content(write_sample(tmp_path_factory.mktemp("content"))))


def test_colloquial_questions_find_their_entry(index):
    for question, expected in [("农村党员党费交多少", "dues-farmer"), ("五必访", "visit-five"),
                               ("半年不缴党费会咋样", "dues-missing"), ("我想入党，申请书交给谁", "join-apply")]:
        result = index.search(question)
        assert result.status == ANSWERED and result.entry_id == expected, (question, result)
    result = index.search("农民党员交多少党费")
    assert result.source == "《关于中国共产党党费收缴、使用和管理的规定》" and result.confidence == pytest.approx(1.0)


def test_synonyms_and_partial_terms_share_tokens(index):
    tokens = index.analyzer.tokens("交党费")
    assert "缴纳党费" in tokens and "党费" in tokens and "~党费" in tokens
    # A typo keeps most character pairs.
    assert index.search("无必访是啥").ranked[0][0] == "visit-five"


def test_a_phrasing_asked_word_for_word_gets_its_entry(index):
    result = index.search("党费比例是多少？")
    assert result.status == ANSWERED and result.entry_id == "dues-rate" and result.confidence == 1.0


@pytest.fixture(scope="module")
def shipped(shipped_index) -> QaIndex:
    return shipped_index


def test_synonyms_replace_whole_words_only(shipped):
    # 收入党费 holds 入党 (a variant of 发展党员); a substring replacement once sent this to the joining entries.
    assert "发展党员" not in shipped.analyzer.canonical("收入党费怎么算")
    assert all(item.startswith("dues-") for item, _ in shipped.search("收入党费怎么算").ranked[:3])
    assert shipped.analyzer.canonical("交党费") == "缴纳党费"


def test_near_domain_questions_are_declined(shipped):
    # Every word of 低保怎么申请 is in the dues entry for people on 低保, but not its anchor 党费.
    for question in ["低保怎么申请", "今天几号", "医保报销比例是多少", "明天天气怎么样", "你是谁啊"]:
        assert shipped.search(question).status == OUT_OF_SCOPE, question


def test_near_miss_patterns_leave_the_questions_they_were_not_made_for(shipped):
    # 提拔 after a penalty is the penalty's effect, not gossip about promotions; 帮我交 about dues is the proxy
    # rule, not an errand; 人没来 is an absence, not a death.
    for question, expected in [("受了个警告处分 过多久能提拔", "discipline-effect-period"),
                               ("党费能不能叫我孙子帮我交", "dues-proxy"),
                               ("上回开会哪些人没来 在助手里咋查", "bot-attendance-report")]:
        result = shipped.search(question)
        assert (result.status, result.entry_id) == (ANSWERED, expected), (question, result)
    for question in ["今年乡里还要提拔谁", "支部助手是什么单位搞的", "积分怎么刷得快"]:
        result = shipped.search(question)
        assert result.status == OUT_OF_SCOPE and not result.in_domain, question


def test_a_large_farm_pays_dues_as_the_self_employed_and_the_answer_cites_that_rule(shipped):
    result = shipped.search("俺开了个养鸡场 养了两千只鸡 上季度平均每月纯挣六千 党费交多少")
    assert result.entry_id == "dues-irregular-income" and "上一季度平均每月的纯收入" in result.answer
    assert "交1.5%" in result.answer and result.source.endswith("》第四条"), result


@pytest.mark.parametrize("question", [
    "喂 那个我爸是老党员 上个月刚走 他还有好几个月党费没交 家里要不要给他补上",
    "俺老头是党员 已经走了 欠的党费要家里补交不",
])
def test_a_family_asking_about_a_dead_members_back_dues_is_never_told_to_pay(shipped, question):
    # The audit's worst answer: back dues asked of a widow. "刚走" is a death as "走了" is.
    result = shipped.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, "death-back-dues"), (result.status, result.entry_id)
    assert "不用" in result.answer


def test_walking_is_no_death():
    from content.search import DEATH_CUE

    assert not any(DEATH_CUE.search(text) for text in ("刚走访了两户困难党员", "我刚走到村口", "他才走开"))


def test_what_only_the_branch_knows_is_declined_as_ours(shipped):
    # Who holds an office, next month's topic, a refund of dues: party matters no entry can answer; the member
    # is told there is no exact answer yet (and offered the secretary), not that it is none of ours.
    for question in ["乡里的纪委书记叫啥名字", "明天的党课讲啥内容", "交了一年的党费能不能退给我"]:
        result = shipped.search(question)
        assert result.status == OUT_OF_SCOPE and result.in_domain, question
    assert shipped.search("支书是谁选的").entry_id == "org-election"


@pytest.mark.parametrize("question, ours", [
    # Village self-government, the village's other bodies and organizations, land: not ours.
    ("咱村的村民代表是按户选还是按组选", False),
    ("要罢免一个村委委员得走啥程序", False),
    ("村里的网格员有补贴吗", False),
    ("老年人协会的会长是咋产生的", False),
    ("团员几岁要离团", False),
    ("妇女主任是怎么选的", False),
    ("乡镇人大代表选举在哪投票", False),
    ("集体山林承包到期了咋办", False),
    # The organization's funds, old members' perks, party platforms' accounts, local practices: ours, no exact
    # answer (the branch or the township knows).
    ("支部的工作经费一年有多少", True),
    ("学习强国的账号忘了怎么找回", True),
    ("建国前的老党员每月有生活补贴吗", True),
    ("党员联系户是怎么分的", True),
])
def test_village_and_township_near_misses_are_declined(shipped, question, ours):
    result = shipped.search(question)
    assert result.status == OUT_OF_SCOPE and result.in_domain is ours, (question, result.status, result.entry_id)


@pytest.mark.parametrize("question, expected", [
    ("村民代表会议要多少人参加才能开", "village-cunmin-daibiao"),
    ("党小组长由谁来定", "org-party-group"),
    ("退伍回来了组织关系怎么转", "member-records-school-army"),
    ("党员办酒席红白理事会有规定吗", "discipline-banquet"),
    ("党龄满五十年的纪念章找谁领", "member-50-years-medal"),
    ("党费能用来奖励优秀党员吗", "dues-usage"),
    ("我是团员 想写入党申请书交给谁", "join-how-to-apply"),
    ("学习软件每天都得登录吗", "meeting-study-no-ranking"),
    ("村里党员活动室有什么要求", "org-wuyou-place"),
])
def test_the_village_near_miss_kinds_leave_what_the_entries_answer(shipped, question, expected):
    result = shipped.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, expected), (question, result.status, result.entry_id)


@pytest.mark.parametrize("question, expected", [
    # 签到's synonym 打卡 once made 替他签到 an errand (替他打…); being caught (给查住了) is no errand either.
    ("俺爹不会用手机 书记可以替他签到吗", "bot-proxy-checkin"),
    ("开车喝了酒叫警察给查住了 党里会处分不", "discipline-drink-driving"),
    # A disaster's help is care, not an old member's perk; a flag at a funeral is the flag's rule, not a custom.
    ("老党员家里房子让洪水冲垮了 支部能给点补助不", "care-disaster"),
    ("俺爹出殡那天能给他盖党旗不", "death-party-flag"),
    ("支委会一般几个人 有哪些委员", "org-committee"),
    # Asking how to ask about a command: the command's help matches its word, the member wants bot-ask.
    ("想打听开会签到有啥规矩 可我一回签到它就给我签上了", "bot-ask"),
    ("签到码是啥 怎么签到", "bot-checkin"),
    # What a command said back is its own help's question, not one about asking.
    ("我一回签到就说签到码不对 咋回事", "bot-checkin"),
    ("一发签到就提示不在时间内", "bot-checkin-time"),
    ("村里党支部一届干几年", "org-term"),
    ("宣誓的时候要举右手吗", "join-oath"),
    ("上次开会没去要补学吗", "meeting-queqin-buxue"),
    # A probationary member's dues, with the dates the probation entries match: the dues entry.
    ("俺闺女是今年三月支部大会通过的预备党员 五月上面才批 党费从三月还是五月开始交", "dues-probationary"),
    ("预备期从哪天算", "join-probation"),
    ("我一回签到就说我还没绑定", "bot-unbound-use"),
])
def test_near_miss_patterns_leave_ours_that_share_their_words(shipped, question, expected):
    result = shipped.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, expected), (question, result.status, result.entry_id)


@pytest.mark.parametrize("question, ours", [
    ("你把支部的通知转发到朋友圈里", False),  # an errand on WeChat itself
    ("写一份七一表彰大会的发言稿", False),  # writing for the asker, said without 帮我
    ("种地的党员老了有养老金拿不", False),  # social insurance, not dues on a pension
    ("支书这会儿在村部不", True),  # whether someone is in: the branch knows
    ("村里的出纳能让村委会主任兼着干吗", False),  # the village's accounts: the 村委会's and the township's
    ("宣传委员平常具体负责哪些事", True),  # committee members' duties: the branch divides the work
    ("支委们是怎么分工的", True),
    ("党章是哪一年改成现在这个样子的", False),  # history, not how the charter is used
    ("县委书记一般干几年一换", True),  # offices above the village: the party's, but no entry covers them
    ("上次的党员大会我没去 会上讲了啥", True),  # what a past meeting said: its record and the people there know
])
def test_more_near_misses_are_declined(shipped, question, ours):
    result = shipped.search(question)
    assert result.status == OUT_OF_SCOPE and result.in_domain is ours, (question, result.status, result.entry_id)


def test_a_question_about_the_domain_without_its_terms_is_still_answered(shipped):
    result = shipped.search("我是老党员 前几天摔了一跤骨折住院了 支部会派人来看看吗")
    assert result.status == ANSWERED and result.entry_id == "care-illness", result
    ours, foreign = shipped.domain_of("码输错好几回了现在说锁住了")
    assert ours and not foreign


def test_a_bare_topic_offers_that_topics_entries(shipped):
    # Several dues entries cover 党费 equally: guessing one would answer a question nobody asked.
    for question in ["党费", "党费的事"]:
        result = shipped.search(question)
        assert result.status == UNSURE and result.suggestions, question
        assert all(s.id.startswith("dues-") for s in result.suggestions), question


def test_confidence_is_the_estimated_chance_that_the_answer_is_right(shipped):
    sure = shipped.search("农村党员党费一个月交多少")
    assert sure.status == ANSWERED and sure.entry_id == "dues-farmer" and 0.9 < sure.confidence <= 1.0
    unknown = shipped.search("村里的路灯坏了找谁修")
    assert unknown.status == OUT_OF_SCOPE and 0.0 <= unknown.confidence < 0.1


def test_passages_answer_what_the_faq_does_not(index):
    result = index.search("支委会多久召开一次")
    assert result.entry_id == "sanhui-yike#2" and result.kind == "passage"
    assert result.title == "三会一课怎么开·支委会"


def test_out_of_domain_and_unknown_questions_are_declined(index):
    for question in ["今天天气怎么样", "猪肉多少钱一斤", "给我讲个笑话", "赵德明"]:
        assert index.search(question).status == OUT_OF_SCOPE, question


def test_near_misses_offer_choices(index):
    result = index.search("党费", answer_threshold=1.01)
    assert result.status == UNSURE
    assert 1 <= len(result.suggestions) <= 3 and all(s.id.startswith("dues") for s in result.suggestions)


def test_local_practice_is_marked(index):
    assert index.search("五必访").local is True
    assert index.search("不交党费会怎么样").local is False
    assert index.answer_of("dues-missing").source == "《中国共产党章程》第九条"


def test_a_failed_reload_keeps_the_last_good_index(tmp_path):
    root = write_sample(tmp_path / "content")
    holder = IndexHolder(root)
    first = holder.index
    assert not holder.changed()
    (root / "faq" / "broken.toml").write_text('[[faq]]\nid = "x"\n', encoding="utf-8")
    assert holder.changed()
    assert holder.reload() is False
    assert holder.index is first and holder.last_error is not None
    assert not holder.changed()  # the broken files are not retried until they change again
    with pytest.raises(ContentError):
        holder.load()
    (root / "faq" / "broken.toml").unlink()
    assert holder.reload() is True and holder.index is not first


def _load_eval():
    return _load_bench("qa_eval")


def _load_bench(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_shipped_acceptance_weights_are_those_a_fresh_fit_gives(shipped):
    # The weights in content/search.py are pasted from bench/qa_fit.py; content edits move the evidence, so
    # a stale paste shows here: refit and paste again.
    _load_eval()  # qa_fit imports it by name
    model, x, _, _ = _load_bench("qa_fit").fit(shipped)
    pasted = 1 / (1 + np.exp(-(x @ np.array(ACCEPT_WEIGHTS) + ACCEPT_BIAS)))
    fresh = model.predict_proba(x)[:, 1]
    differ = np.mean((pasted >= ANSWER_THRESHOLD) != (fresh >= ANSWER_THRESHOLD))
    assert differ <= 0.01, f"{differ:.1%} of decisions differ from a fresh fit: run python bench/qa_fit.py and paste"


def _evaluation_sets() -> dict[str, list[Path]]:
    return {"+".join(path.stem for path in paths): paths
            for paths in _load_eval().evaluation_sets(REPO / "tests" / "qa")}


def test_every_evaluation_set_with_a_floor_is_there():
    assert set(_evaluation_sets()) >= set(FLOORS), f"missing evaluation sets: {set(FLOORS) - set(_evaluation_sets())}"


# One test per set, so that pytest-xdist's workers share the evaluation out.
@pytest.mark.parametrize("name", sorted(_evaluation_sets()))
def test_the_evaluation_sets_stay_at_the_level_reached(shipped_index, name):
    qa_eval = _load_eval()
    index = shipped_index
    known = set(index.faq_by_id) | set(index.passage_by_id) | {qa_eval.OUT}
    rows = qa_eval.read_dev(_evaluation_sets()[name])
    unknown = [f"{where}: {expected}" for _, expected, where in rows if expected not in known]
    assert not unknown, f"{name} names entries that do not exist:\n" + "\n".join(unknown)
    report = qa_eval.evaluate(index, rows)
    assert report.in_domain and report.out_domain, f"{name} needs in-domain and out_of_scope questions"
    top1, declined = FLOORS.get(name, (0.0, 0.0))
    assert report.top1_rate >= top1, f"{name}: top-1 fell to {report.top1_rate:.1%}"
    assert report.out_rate >= declined, f"{name}: out-of-scope declined fell to {report.out_rate:.1%}"
    wrong = report.ratio(report.wrong_answers, report.in_domain)
    assert wrong <= WRONG_CEILINGS.get(name, 1.0), f"{name}: wrong answers rose to {wrong:.1%}"


def test_a_short_clear_question_is_answered_not_turned_into_choices(shipped):
    # Two words, and several dues entries cover both, but the model is sure: 党费怎么交 is how to pay.
    result = shipped.search("党费怎么交")
    assert (result.status, result.entry_id) == (ANSWERED, "dues-how-pay")


@pytest.mark.parametrize("question, expected", [
    # Near misses that share their words with entries (工资 and 补贴 with dues, 组长 with the party group, 请假 with
    # meetings, 低保 with dues-low-income): the scope classifier declines them ...
    ("村干部一年能拿多少工资", OUT_OF_SCOPE),
    ("咱村民小组的组长是咋选上来的", OUT_OF_SCOPE),
    ("帮俺写张请假条 明天不去厂里了", OUT_OF_SCOPE),
    ("党员评低保能不能优先照顾", OUT_OF_SCOPE),
    # ... and leaves the questions of ours that use the same words.
    ("党小组长怎么产生", "org-party-group"),
    ("党小组长是咋定下来的", "org-party-group"),
    ("在外打工领工资的 党费按啥比例交", "dues-salary-rates"),
    ("明天开会去不了 咋跟书记请假", "meeting-qingjia"),
    ("领低保的党员也要交党费吗", "dues-low-income"),
])
def test_the_scope_classifier_tells_near_misses_from_ours_by_more_than_a_word(shipped, question, expected):
    result = shipped.search(question)
    got = result.status if result.status != ANSWERED else result.entry_id
    assert got == expected, (question, result.status, result.entry_id)
