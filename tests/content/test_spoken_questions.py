"""Questions as members really say them (issue 17, items 4 and 5), on the shipped content: fillers around a
dictated question, figures written into terms (3会1课), several questions in one message (the first answered,
the rest offered), near misses that stay declined, and a party question the content does not cover told so
plainly and offered to the secretary — not called "not understood". Then the replies through the webhook."""

from __future__ import annotations

import pytest

from content.search import ANSWERED, OUT_OF_SCOPE, holder_for, split_questions, without_fillers


@pytest.fixture(scope="module")
def index():
    return holder_for(None).index


def test_fillers_are_dropped_but_never_the_whole_question():
    assert without_fillers("喂 那个我想问一哈 就是这个三会一课是个啥子东西嘛") == "这个三会一课是个啥子东西嘛"
    assert without_fillers("你好") == "你好"


def test_a_message_with_two_questions_splits_where_the_second_begins():
    assert split_questions("我想问两个事 一个是党费咋交 还有就是开会请假找谁") == ["我想问两个事 一个是党费咋交", "开会请假找谁"]
    assert split_questions("党员还有啥义务") == ["党员还有啥义务"]
    # A clause asking with a word, 不 and the word again (算不算, 够不够) is a question of its own.
    assert split_questions("第一书记一般待几年 他算不算村两委的人") == ["第一书记一般待几年", "他算不算村两委的人"]
    assert split_questions("俺是退休的 够不够格交零点五") == ["俺是退休的 够不够格交零点五"]


@pytest.mark.parametrize("question, entry", [
    ("喂 那个我想问一哈 就是这个三会一课是个啥子东西嘛", "meeting-sanhui-yike-what"),
    ("3会1课都有哪些会", "meeting-sanhui-yike-what"),
    ("那个 嗯 我在外地打工 那个组织生活咋参加呢 就是回不去", "member-floating-life"),
])
def test_dictated_questions_find_their_entry(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


def test_the_first_question_is_answered_and_the_second_offered(index):
    result = index.search("开会签到怎么签 另外党费在哪交")
    assert result.status == ANSWERED and result.entry_id == "bot-checkin"
    assert [(other.id, other.question) for other in result.others] == [("dues-how-pay", "党费在哪交")]


@pytest.mark.parametrize("question", ["支部书记一个月工资多少", "党员能优先评低保不", "帮我写个请假条给厂里",
                                      "党员的孩子考公务员政审看啥", "村里的路灯坏了找谁修", "你帮我交个电费 跟交党费一样",
                                      "党员看病能多报销点不", "主题党日那天会不会下雨", "共产党是哪一年成立的",
                                      "你直接给我写一篇年终总结", "村两委干部退了以后有没有退休补贴"])
def test_near_misses_stay_declined_and_are_not_called_ours(index, question):
    result = index.search(question)
    assert result.status == OUT_OF_SCOPE and not result.in_domain, result


@pytest.mark.parametrize("question", ["征地补偿款怎么分要走四议两公开吗", "入党志愿书能让别人代写吗",
                                      "我舅舅犯过事会影响我入党政审吗", "今天下雨支委只来了两个 这个支委会还能开不",
                                      "我在外地上班让媳妇帮我交党费可以吧"])
def test_words_a_near_miss_is_made_of_do_not_decline_a_real_question(index, question):
    assert index.search(question).status != OUT_OF_SCOPE, question


def test_a_party_question_the_content_does_not_cover_is_marked_as_ours(index):
    result = index.search("支部的公章丢了咋补办")
    assert result.status == OUT_OF_SCOPE and result.in_domain


# Classes of near miss the eighth blind set found answered, each in words of its own: how the 村委会 vote handles
# a spoilt ballot and schooling aid for members' children are not ours; the rest only the branch or the township
# knows (a seal, how many copies to hand in, lending the activity room, a secretary's age limit or removal, a
# member's allowance, the year's quota for new members).
@pytest.mark.parametrize("question", ["村委会换届投票 我把票填坏了 能换一张新的吗", "当党员的 家里孩子读高中有没有补贴"])
def test_classes_of_near_miss_that_are_not_ours(index, question):
    result = index.search(question)
    assert result.status == OUT_OF_SCOPE and not result.in_domain, result


@pytest.mark.parametrize("question", ["支部的印章找不到了怎么办", "递交入党志愿书要准备几份", "党员活动室能不能租给人家办喜酒",
                                      "村支书超过多少岁就不能干了", "镇党委可以免掉支部书记吗", "普通党员每月有固定的补助吗",
                                      "明年支部能发展几个党员"])
def test_classes_of_party_question_only_the_branch_can_answer(index, question):
    result = index.search(question)
    assert result.status == OUT_OF_SCOPE and result.in_domain, result


@pytest.mark.parametrize("question, entry", [
    ("撤销党内职务是什么处分", "member-discipline-types"), ("书记把明天的会撤了 大家能收到通知吗", "bot-cancel-meeting"),
    ("多大岁数可以参加村委会选举", "org-village-voters"), ("困难党员每个月有补助吗", "care-hardship-help"),
    ("村里没有活动室 能借用村委会的屋子开会吗", "org-wuyou-place"),
])
def test_those_classes_leave_the_questions_next_to_them_answered(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


@pytest.mark.parametrize("question, entry", [
    # 反对票 is the 不赞成票 of the rules; 当上 after a vote is 当选.
    ("支委选举的时候可以投反对票吗", "election-voting"), ("得票过半就能当上支委吗", "election-voting"),
    # 入当 is a slip for 入党 (the domain word now outweighs 入 + 当 in jieba's model); 没入上党 is 没入党, not 上党
    # (a place).
    ("入当要经过哪几步", "join-steps-overview"), ("在外地打工没入上党 回村了申请书交给谁", "join-how-to-apply"),
])
def test_everyday_words_for_the_terms_of_the_rules(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


def test_a_slip_of_the_main_word_is_put_right_and_a_split_verb_joined(index):
    assert index.analyzer.canonical("俺闺女想入当") == "俺闺女想发展党员"
    assert "入党" in index.analyzer.fold("在部队没入上党") and "不能入党" in index.analyzer.fold("政审不过入不了党")


async def test_the_replies_through_the_webhook(make_service):
    service = await make_service()
    await service.bind("m1", "王秀英")
    two = await service.say("m1", "开会签到怎么签 另外党费在哪交")
    assert two.endswith("您还问了“党费在哪交”，回复 1 看这一条。")
    second = await service.say("m1", "1")
    assert "党费" in second and second.splitlines()[-1].startswith("来源：")
    # A part whose answer is worked out keeps its figure when picked.
    await service.say("m1", "开会签到怎么签 另外我一个月到手四千五 党费交多少")
    assert "每月交45元" in await service.say("m1", "1")
    unknown = await service.say("m1", "支部的公章丢了咋补办")
    assert unknown == "这个问题我还没有准确的答案，不想说错了误导您。\n需要的话，回复 1 把问题转给支部书记。"
    assert "没有听懂" not in unknown
    declined = await service.say("m1", "支部书记一个月工资多少")
    assert declined.startswith("没有听懂“支部书记一个月工资多少”")
    # Someone who has not bound is pointed to the secretary, with nothing to forward through.
    assert await service.say("stranger", "支部的公章丢了咋补办") == "这个问题我还没有准确的答案，不想说错了误导您。可以问问支部书记。"


# Classes of near miss the ninth blind set found answered, in words of their own: whether there is any money
# after a member's death, how many votes elect someone to the 村委会 and WeChat or the phone itself going wrong
# are not ours; which organizations count as 软弱涣散, the village work team and cadres' duty rota only the
# township or the county knows.
@pytest.mark.parametrize("question", ["老党员过世了 家里能领到丧葬补助吗", "村委会换届选举 得票要过半才当选吗",
                                      "手机微信一直闪退 消息发不出去"])
def test_classes_of_near_miss_the_ninth_set_found_are_not_ours(index, question):
    result = index.search(question)
    assert result.status == OUT_OF_SCOPE and not result.in_domain, result


@pytest.mark.parametrize("question", ["什么样的支部会被定为软弱涣散", "驻村工作队要在村里待几年", "支委们平时要不要轮流值班"])
def test_classes_the_ninth_set_found_only_the_township_knows(index, question):
    result = index.search(question)
    assert result.status == OUT_OF_SCOPE and result.in_domain, result


@pytest.mark.parametrize("question, entry", [
    ("软弱涣散村会派第一书记吗", "org-first-secretary-where"), ("用手机发语音能签到吗", "bot-voice"),
    ("老党员去世了支部会来人吗", "care-member-death"), ("当选要过半数吗", "election-voting"),
])
def test_the_ninth_sets_classes_leave_the_questions_next_to_them_answered(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


@pytest.mark.parametrize("question, entry", [
    # 视频连线 / 视频参加 is joining a meeting by video (meeting-online), whatever the asker's situation.
    ("俺在外省上班 党小组会能视频连线参加吗", "meeting-online"),
    # A daughter's wedding (闺女出嫁) is a member's 婚丧喜庆 (discipline-banquet).
    ("俺是党员 闺女出嫁想请全村吃个席 有啥讲究", "discipline-banquet"),
    # 来看她 is a visit (走访慰问), here on a festival.
    ("俺娘是老党员 重阳节村里会来看她吗", "care-festivals"),
    ("换届到底咋弄 先做什么后做什么", "election-steps"),
])
def test_everyday_words_the_ninth_set_used(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


def test_asking_for_the_order_of_things_is_asking_for_the_procedure(index):
    # 先干啥后干啥 and its variants are how people ask for a 流程 (synonyms.toml).
    assert "流程" in index.analyzer.canonical("换届到底先做什么后做什么")
    assert "流程" in index.analyzer.canonical("发展党员先干什么后干什么")


def test_a_slip_in_what_makes_a_question_computable_is_put_right_first(index):
    # 申情书 (a slip for 申请书) kept the birth date from being worked out; the search read it as a question
    # about writing the letter.
    result = index.search("闺女2010年5月生的 哪年能交申情书")
    assert (result.status, result.entry_id) == (ANSWERED, "join-who-can-apply"), result
    assert "满18岁" in result.answer


@pytest.mark.parametrize("question, entry", [
    # Votes counted at a 党员大会: whether it passed is the vote's entry, not the attendance one (which says only
    # whether the meeting may be held); an election's when the question speaks of electing.
    ("支部开党员大会 二十六个正式党员来了十八个 赞成的有十四个 这算通过了吗", "join-branch-vote"),
    ("俺们支部四十个党员 党员大会到了三十五个 选支委时候选人要得几票", "election-voting"),
    # Without votes counted, and at other meetings, the entries found stay.
    ("党员大会要到多少人才能开", "meeting-dahui-quorum"), ("支委会研究事情 赞成的过半数就行吗", "meeting-zhiweihui-quorum"),
    ("村民会议作决定 要多少人赞成才算数", "village-cunmin-huiyi"),
])
def test_votes_counted_at_a_members_meeting_find_the_votes_entry(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


@pytest.mark.parametrize("question", ["开会咋千到", "会上咋千到啊", "千到"])
def test_a_dictated_slip_of_the_check_in_word_is_put_right(index, question):
    # 千到 for 签到 (issue 17's own example): 签到 has a dictionary frequency now, as 入党 has, so the slip is
    # corrected; figures that say 千 to 千 are left alone.
    assert index.search(question).entry_id == "bot-checkin"
    assert index.analyzer.homophones.fix(index.analyzer.fold("一千到两千")) == "一千到两千"


def test_a_slip_in_the_word_that_decides_the_bracket_is_read_right(index):
    # 退修金 is 退休金 misheard: read as it came, 3,600 was taken for a wage and charged 1% (36 元) instead of a
    # pension's 0.5% (18 元).
    result = index.search("老头子以前是民办教师 现在每月退修金三千六 他一个月党费该交多少")
    assert result.status == ANSWERED and result.entry_id == "dues-retiree", result
    assert "每月交18元" in result.answer and "1%" not in result.answer.split("。")[1], result.answer


# The eighteenth blind set and the seventh dictated one found near-miss words deciding too much: weather given as
# the reason to call a meeting off, an ID card named while binding. And near misses no pattern knew: inspection
# tours, tax on a 慰问金, auditing the village's accounts, a penalty's effect on a grandchild's exam.
@pytest.mark.parametrize("question, entry", [
    ("后天要下大暴雨 俺是支书 咋在助手里把主题党日取消了", "bot-cancel-meeting"),
    ("帮老伴绑定 名字照身份证输的 还是说不对", "bot-bind-failed"),
])
def test_a_near_miss_word_given_as_context_does_not_decline_the_question(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


def test_a_sure_first_question_is_answered_when_the_second_is_too_short_to_read_alone(index):
    # "一年要讲几次" alone finds nothing, and read whole the message leans to how often 党课 are given; the first
    # question asks who gives them, and is sure of its entry. The whole message's entry is offered.
    question = "党课一般谁来讲？一年要讲几次？"
    assert index.search("党课一般谁来讲").confidence >= 0.99
    assert index.search("一年要讲几次").status != ANSWERED
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, "meeting-dangke-who"), result
    assert [other.id for other in result.others] == ["meeting-dangke-frequency"]


@pytest.mark.parametrize("question, entry", [
    ("我是支书兼村主任 助手上书记能发哪些命令", "bot-secretary-commands"),
    ("我是村支书兼村主任，怎么在助手上召集开会", "bot-call-meeting"),
])
def test_who_is_asking_does_not_answer_in_place_of_the_question(index, question, entry):
    # The self-introduction alone finds the entry on holding both offices; the question is what follows it.
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result
    # With nothing of its own after the introduction, the message is read whole.
    assert index.search("我是支书兼主任 这样合规吗").entry_id in (None, "org-yijiantiao")


# What this round's blind sets (holdout18, 19, 21, dictated7, 9) found, each in words of its own.
@pytest.mark.parametrize("question, entry", [
    # A member on 低保 who cannot pay asks for relief, not for the 低保 rate.
    ("俺低保户 家里实在困难 当费交不起了 能免吗", "dues-hardship"),
    # A sum of the member's choosing: paying more than the rate is the member's to decide.
    ("按规定我一个月交35 我想每月交50块行不行", "dues-more-voluntary"),
    # 老百姓 is no 100 元: how dues are used, not a dues figure worked out on 100 元.
    ("党费交上去都用到哪了 俺们老百姓也想知道", "dues-usage"),
    # Who is asking, 一肩挑 and all, is not the question.
    ("我是支书兼主任，一肩挑，党员开会没带手机 我怎么替他签到", "bot-proxy-checkin"),
    # 学识 is how speech recognition writes 学时.
    ("俺们支部让登记学识 在家看党建节目算不算学识", "study-hours-count"),
    # Can it be restored, after the story of how it was stopped: restoring membership.
    ("我在外头打工那几年跟村里断了联系 听说停止党籍了 现在回村了 能恢复不", "member-restore-membership"),
    # Asking whether this is the assistant is no question of the content; 前几年 asks nothing either.
    ("喂 是支部助手不 我问个事 俺家里从没见过党员证 办事要证明俺是党员 咋证明", "member-proof"),
    # A relative's fight told for a political review is no family quarrel; 补选 said in passing is no question.
    ("俺表哥年轻时打架被判过刑 俺入党政审看不看这个", "join-political-review"),
    ("我是前年补选上来的支书 换届从头到尾要走哪几步", "election-steps"),
    # Whether a probationary member pays yet, with a wage named: the probationary member's dues, not the wage rate.
    ("俺刚当上预备党员 上级还没批 一个月挣四千 党费现在就要交吗", "dues-probationary"),
    # 交给打工那边: work, not an errand for the asker.
    ("俺在外地打工 厂里没有党组织 入党申请书交给村里还是交给打工那边", "join-how-to-apply"),
    # dictated12: 差一大截 is no party history (一大); falling short asks what follows, not how many are left.
    ("今年才学了二十个学时 差一大截 学不够会挨处分不", "study-hours-short"),
    # A probationary relative as sponsor is the sponsors entry's question; 儿子给买的 (a new phone) is no errand.
    ("俺表姐是今年才转的预备党员 她能给我当入党介绍人不", "join-sponsors"),
    ("闺女给买的新手机 助手要重新绑定吗", "bot-rebind"),
    # Messages in a WeChat group as a meeting, asked by members working away (流动党员).
    ("俺们几个在外地打工的党员 书记说在微信群里发个言就算开会了 这算数不", "meeting-online"),
    # Asking in the first part, saying in the next that the command ran instead: the cue reads the whole message.
    ("我想问问开会签到都有啥规矩 可我一发签到两个字 它就当成我要签到了 我该咋说它才晓得我在问问题", "bot-ask"),
])
def test_questions_of_this_rounds_blind_sets_find_their_entry(index, question, entry):
    result = index.search(question)
    assert (result.status, result.entry_id) == (ANSWERED, entry), result


# Their near misses: True when ours but not covered ("no exact answer yet"), False when not ours.
@pytest.mark.parametrize("question, ours", [
    ("上面派巡察组来村里 都查哪些东西", False),
    ("过节发的慰问金要交个税吗", False),
    ("村里的账谁来审计", False),
    ("我挨过处分 会不会影响闺女考警校", False),
    ("镇党委委员是怎么选出来的", True),  # offices above the village: the party's, but no entry covers them
    ("县委一般设几个委员", True),
    ("主题教育都学些啥", True),  # a campaign's programme
    ("转党费的网站是多少", True),
    ("党员买车要跟支部报备吗", True),
    ("举报村干部以后多久能有回音", True),
    ("入了党以后工资会不会涨", False),
    ("主题党日要穿正装吗", True),  # what to wear: the branch's custom
    ("候选人公示多少天", True),  # how long a list is posted: the higher committee's notice
    ("党务公开都公开些啥", True),
    ("帮俺写个悼词 俺爹是老党员", False),
    ("入党以后团籍还保留吗", False),
    ("俺的入党介绍人前些日子过世了 要换一个不", True),
    ("申请书交了 我现在不想入了 能撤回不", True),
    ("老头子的纪念章找不到了 能补办不", True),
    ("入党要不要体检 我血压高", True),
    ("支委走了一个 要补选不", True),
    ("村支书能兼着当会计管账不", False),  # the village's accounts: the 村委会's and the township's
    ("建党节那天放假不", False),  # public holidays
    ("在群里乱转发谣言 算违纪不", True),  # the rules on speech: no entry covers them
    ("发展对象培训完了考啥", True),  # a course's exam: the county's
    ("入党四十年的有没有纪念章", True),  # medals for other years: some places give them, the centre does not
    ("交了好几年申请书都没动静 要不要重新写一份", True),
    ("培养联系人能让俺亲叔叔当不", True),
    ("入党积极分子要交党费吗", True),
    ("党员大会商量村里修桥 是举手还是投票", True),
    ("支部的党费账要不要向党员公开", True),
    ("联系人搬走了见不着 能给我换一个联系人不", True),
    ("村主任被纪委带走好几天了 是不是被留置了", True),
    ("转正申请书有没有固定格式", True),
])
def test_near_misses_of_this_rounds_blind_sets_are_declined(index, question, ours):
    result = index.search(question)
    assert result.status == OUT_OF_SCOPE and result.in_domain is ours, result


def test_a_comma_is_a_pause_between_questions(index):
    # "…一年开几回啊，都在啥时候开，跟…民主生活会是一回事不": three questions, the first answered, as with spaces.
    assert split_questions("组织生活会一年开几回啊，跟民主生活会是一回事不") == ["组织生活会一年开几回啊", "跟民主生活会是一回事不"]
    result = index.search("组织生活会一年开几回啊，跟民主生活会是一回事不")
    assert (result.status, result.entry_id) == (ANSWERED, "meeting-zuzhi-shenghuohui"), result


def test_hours_said_for_each_month_are_not_the_years_hours():
    from content.study_hours import compute
    assert compute("每个月学两个学时 一年够不够") is None  # once: "学了2个学时，还差30个"
    assert "还差12个" in compute("今年学了二十个学识 还差几个").text
