"""Finding the curated answer to a member's question, or knowing that there is none.

A question is cut to its first QUESTION_MAX_CHARS characters before anything else is done to it, and every
step after that takes time linear in its length. Sound-alike slips (情假 for 请假) are put right first
(content/homophones.py). Text is cut with jieba (with the domain dictionary); colloquial variants are
replaced, word by word, by their canonical terms (synonyms.toml), and the words as written are kept too.
Each text becomes jieba's search-mode words plus its character pairs, so a partial or mistyped term still
shares most of its tokens with the right entry.

bm25s indexes every FAQ text (standard question and phrasings), every entry as one bag of words with its
answer, and the document passages; a linear classifier trained on the phrasings scores every entry
(content/classifier.py), and a second one, trained on the phrasings and on members' questions labelled in or out
of scope (content/scope.tsv), says whether the question is about anything the entries cover. The best candidates are ranked by a weighted sum of evidence; each has
a bounded coverage score (the share of the question's weight that the entry's words cover). A small
logistic model turns the best candidate's evidence, with whether the question speaks of this domain at
all, into the chance that it is the right entry; thresholds on that chance decide between answering,
"您是不是想问" choices and declining. docs/architecture.md ("How a question finds its answer") gives the
reasons; bench/qa_eval.py measures the result and bench/qa_fit.py fits the model.

This module imports nothing from bot/ or handlers/.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from content.bm25 import Bm25Scores
from content.classifier import EntryClassifier, ScopeClassifier
from content.dialect import to_mandarin
from content.computed import Computed, compute_answer
from content.dues import SEVERAL_MONTHS_AT_ONCE
from content.homophones import HomophoneFixer
from content.loader import (
    DEFAULT_ROOT,
    OUT_OF_SCOPE_LABEL,
    Content,
    ContentError,
    Passage,
    normalize_question,
)
from content.memory import settle as settle_memory
from content.tokenizer import with_main_dictionary

log = logging.getLogger(__name__)

ANSWERED, UNSURE, OUT_OF_SCOPE = "answered", "unsure", "out_of_scope"

# Whether to answer is decided by a logistic model over the evidence for the best candidate: its
# confidence (below), its best single text, its texts together, its lead over the runner-up, the runner-up's
# confidence, whether the question speaks of this domain or of a foreign one, how much of the question no
# entry knows, whether it has the entry's anchor words, BM25, the question's length, and the entry
# classifier's margin for it and its lead over the next entry. The model's output is the reported
# confidence: the estimated chance that the best candidate is the right entry. At or above
# ANSWER_THRESHOLD we answer; between SUGGEST_THRESHOLD and it we offer choices; below, we decline.
# bench/qa_fit.py fits the weights on tests/qa/ (all but holdout3.tsv, which stays blind) and prints them
# for pasting here; refit after large content changes. ANSWER_THRESHOLD is where its cross-validated rates
# of right answers and of declined out-of-scope questions add up to the most (0.5 to 0.6 tie; 0.5 answers
# more).
ACCEPT_FEATURES = ("confidence", "best_text", "texts", "lead", "runner_up", "ours", "foreign", "unseen",
                   "anchored", "log_bm25", "log_words", "margin", "margin_lead")
ACCEPT_WEIGHTS = (2.54, -2.12, 2.40, 1.04, 1.16, 1.80, -0.31, -1.69, 1.00, 0.39, 1.24, 1.38, 1.60)
ACCEPT_BIAS = -9.16
ANSWER_THRESHOLD = 0.5
SUGGEST_THRESHOLD = 0.45
# A lead is counted up to this much: beyond it, a candidate is simply far ahead.
MAX_LEAD = 1.5
# A document passage answers, when no FAQ entry does, if the question speaks of this domain and the
# passage covers this share of it (a passage has no model of its own).
PASSAGE_THRESHOLD = 0.44
# A runner-up within AMBIGUOUS_MARGIN in ranking that covers this share of the question makes the question
# tied: the member gets both as choices rather than our guess.
RUNNER_UP_CONFIDENCE = 0.44
# A question of at most TOPIC_WORDS words that two entries cover to TOPIC_COVERAGE names a topic, not a
# question ("党费的事"): when the model would not answer it, the member gets the topic's entries to choose.
TOPIC_WORDS = 2
TOPIC_COVERAGE = 0.8
# Two candidates this close (in ranking score) are ambiguous: offer both instead of guessing.
AMBIGUOUS_MARGIN = 0.03
MAX_SUGGESTIONS = 3
# In a message of several questions where only one part finds an answer, the first part's answer is taken over
# the whole message's reading when the decision model is this sure of it.
FIRST_PART_SURE = 0.99
# A document passage says more than a FAQ answer and matches more words by chance: it counts at this share.
PASSAGE_FACTOR = 0.8
# How the ranking score weighs a candidate's evidence: the best single text (question or phrasing), the
# entry's texts together, the entry with its answer, and BM25 relative to the best candidate's; then the
# entry's standard question alone, which breaks ties between siblings that share most words.
RANK_WEIGHTS = (1.0, 0.5, 1.5, 0.6)
QUESTION_WEIGHT = 0.6
# The entry classifier's margin (content/classifier.py) joins the ranking at this weight, and its best few
# entries join the candidates.
CLASSIFIER_WEIGHT = 2.0
CLASSIFIER_CANDIDATES = 5
CANDIDATES = 20
# A question the scope classifier (content/classifier.py, ScopeClassifier) puts below this margin is declined
# whatever the evidence for its best candidate: a near miss shares most words with some entry ("村干部一个月
# 工资多少" with the dues entries), so the acceptance model alone answers too many of them. Cross-validated on
# the read sets, leaving each set out of the classifier and of the acceptance fit: at 0, 98.0 % of the
# out-of-scope questions declined instead of 96.6 %, right answers 96.9 % instead of 97.1 %, wrong answers
# the same (1.1 %); with the near-miss patterns below switched off, 94.5 % declined instead of 84.1 %. As a
# 14th feature of the acceptance model it did worse: the model used it to answer more, wrongly too.
SCOPE_DECLINE = 0.0
# Words used by at least this share of an entry's texts are its anchors; a question with none of them
# keeps this share of its confidence.
ANCHOR_SHARE = 0.75
ANCHOR_PENALTY = 0.7
# A word no FAQ text uses ("髋骨", "手术") weighs this share of the rarest known word: it tells us the
# question says something the content does not, but not how much that matters.
UNSEEN_FACTOR = 0.35
# Character pairs weigh less than words in the confidence: they mostly echo the words they overlap.
PAIR_WEIGHT = 0.5
# A question is read up to this many characters; the rest is never looked at (clip_question). The longest
# question in the evaluation sets has 60 characters and the longest phrasing in the content 68; a voice
# message, at most a minute long, is some 250 to 300 characters of speech. A longer text is a pasted notice
# or a story, not one question, and every step of the search costs time in proportion to what it reads:
# cutting first bounds the time any message can take (a 6,000-character one once delayed every reply 15 s).
QUESTION_MAX_CHARS = 300
# Where a question must be cut, it ends at the last sentence end (。！？；) in its final third, if there is one,
# rather than in the middle of a clause.
_SENTENCE_END = re.compile(r"[。！？；!?;]")

# Words that carry no topic: question words, particles, pronouns.
STOPWORDS = frozenset("""
的 了 吗 呢 啊 吧 呀 嘛 么 哦 噢 呗 啦 哈 嗯 吖 哇 着 过 地 得 之 所 和 与 及 或 跟 同 把 被 让 给 对 向 从 在 于
我 你 您 他 她 它 咱 我们 你们 他们 她们 咱们 大家 自己 人家 俺 俺们 这 那 这个 那个 这些 那些 这样 那样 这么 那么
是 有 没 没有 不 不是 就 都 也 还 还是 又 再 才 很 太 挺 最 更 要 想 会 能 能不能 可以 可不可以 可能 应该 需要 得要 用
怎么 怎么样 怎样 如何 怎么办 咋 咋办 咋样 啥 什么 什么样 哪 哪些 哪个 哪里 哪儿 几 多少 为什么 为啥 是否 是不是 有没有
请问 请 问 问下 问一下 一下 一个 一些 一点 些 个 吧 呢 啊 的话 知道 告诉 说说 讲讲 了解 情况 事 事情 东西 规定 要求
""".split())
# Characters that make a character pair worthless on their own ("的党", "费吗").
_PARTICLES = frozenset("的了吗呢啊吧呀嘛么哦呗啦着过地得我你您他她它这那是有没不就都也还又再很太要想会能可以怎咋啥什哪几为请问些个")
# Characters that never belong to a topic word: a pair with one of them is noise.
_FILLERS = frozenset("的了吗呢啊吧呀嘛哦呗啦着么咋啥怎")
# Character pairs inside stopwords ("么样" of 怎么样) say no more than the stopwords.
_STOP_PAIRS = frozenset(word[i:i + 2] for word in STOPWORDS for i in range(len(word) - 1))
# Topics the bot never answers: a question with one of these and no word of this domain is declined. Everyday words that
# members use about party matters (打工 for 流动党员, 工资 for dues, 看病 for care visits) are not here.
OUT_OF_DOMAIN = frozenset("""
天气 下雨 下雪 气温 温度 降温 刮风 台风 预报 股票 基金 彩票 炒股 房价 油价 菜价 肉价 猪价 粮价 价格 行情 涨价 降价
笑话 唱歌 唱首歌 电影 电视剧 游戏 小说 音乐 快递 外卖 导航 火车票 机票 车票 高铁 星座 算命 运势 减肥 菜谱 做饭 怎么做菜
足球 篮球 比赛 明星 你是谁 你叫什么 你几岁 你好 您好 在吗 早上好 晚上好 晚安 谢谢 哈哈 呵呵 无聊 聊天 聊聊
翻译 英语 数学题 作文 医院挂号 挂号 感冒 发烧 吃药 养猪 化肥 农药 种子 招工 贷款 利息 银行卡 手机话费 话费
新农合 医保 社保 养老保险 报销 低保 宅基地 户口 身份证 驾照 结婚证 离婚 彩礼 残疾证 转学 高考 中考 学费
电费 水费 燃气 宽带 网费 流量 话费
""".split())
# Questions that sound like party matters but are not ours to answer, whatever words they share with the
# content, by kind. "我/俺/咱" are the asker; (?!…党费) keeps a dues question that mentions the same words ours.
_ME = "(?:我|俺|咱|俺们|我们)"
NEAR_MISS_KINDS = {
    # 组长 is a 党小组长 or a 村民小组长; 慰问 keeps a question about the 慰问金 a cadre brings ours.
    "cadres' pay": r"^(?!.*(党费|慰问)).*(书记|支书|村干部|村长|主任|委员|干部|两委|支委|组长|会计|出纳|文书|报账员|"
                   r"网格员|村官).{0,14}(工资|补贴|津贴|待遇|报酬|收入|奖金|年薪|误工|生活补助|工钱|"
                   r"(一个月|一年|每月|每年).{0,3}(拿|挣|领|给)多少|(拿|挣|领|给).{0,2}多少钱)",
    # A wage rise on joining or on becoming a full member (转正以后工资会涨吗) is no more a member's than a priority is.
    "priority for members": r"(转正|入党|入了党|发展党员|当上党员|成了党员)[^，。,]{0,8}(涨工资|加工资|工资[^，。,]{0,3}(涨|加|高)|"
                            r"待遇[^，。,]{0,3}(提高|涨|好))|(优先|照顾|能评|能不能评|评得上|好评|能吃上|能不能吃|先评|加分|好过|走后门|沾光).{0,10}"
                            r"(低保|最低生活保障金|贫困户|救济粮|补助金|工作|就业|招工|上学|入学|考试|当兵|参军|分房|贷款|"
                            r"补贴)|(低保|最低生活保障金|贫困户|工作|就业|招工|上学|入学|考试|当兵|参军|分房|贷款).{0,14}"
                            r"(优先|照顾|评上|评得上|能评|好评|加分|好过|沾光|优惠)",
    "writing for the asker": rf"悼词|祭文|讣告|追悼词|(帮|给|替|代){_ME}(写|起草|拟|编)|(你来|直接|你给).{{0,4}}写(一篇|一份|个)|"
                             r"^(请你?|你)?写(一篇|一份|一个|篇|份)(?!.*(啥|怎么|咋|吗|什么|要不要|格式|注意))|"
                             r"(请假条|检讨书|欠条|借条|合同|起诉书|证明信).{0,6}(给厂|给公司|给老板|给学校)",
    "background checks for jobs": r"(国企|央企|教师|编制|考编|研究生|考研|警校|军校|公务员|事业单位|当兵|参军|入伍|"
                                  r"招工|单位|公司|工作).{0,16}(政治审查|政审)|(政治审查|政审).{0,16}(国企|央企|教师|"
                                  r"编制|研究生|警校|军校|公务员|事业单位|当兵|参军|入伍|单位|公司|工作)|"
                                  r"考公务员|考公|考编|事业编|公务员考试|民主党派|入团|共青团|"
                                  # Whether a member's penalty follows the family (a grandson's military school):
                                  # what it does to the member is discipline-effect-period's.
                                  r"(处分|党纪|开除|违纪|犯过错误).{0,16}(影响|耽误|连累|牵连).{0,10}(孩子|孙子|孙女|儿子|闺女|"
                                  r"女儿|子女|后代|家里人|亲属|娃)",
    "land, insurance, paperwork": r"^(?!.*(党|支部|书记|支书|四议|两公开|村务|公开)).*(宅基地|土地流转|征地|拆迁|补偿款|承包地|确权|流转|粮补|"
                                  r"种粮补贴)|医保|社保|养老保险|合作医疗|新农合|报销|医药费|"
                                  # An ID card named while binding the assistant (名字照身份证打的) is not about the card.
                                  r"^(?!.*(绑|助手|公众号|入党|发展党员|申请书|发展对象|积极分子)).*身份证(?!明)|户口本|驾照|驾驶证|残疾证|结婚证|社保卡|"
                                  # A member's pension is social insurance's; dues on a pension (党费, 交, 扣) are ours.
                                  r"^(?!.*(党费|交|缴|扣|df)).*党员.{0,12}(退休金|养老金|退休工资)",
    # Whether there is any such money at all (有丧葬费没, 给不给抚恤金) is the same question; what follows a
    # member's death in the branch (care-member-death) and dues of one who lives on 抚恤 are answered.
    "after-death money and customs": r"(丧葬费|抚恤金|丧葬补助).{0,8}(多少|能领|去哪|咋领|怎么领)|^(?!.*(党旗|遗体|党费)).*出殡|看日子|择日|风水|"
                                     r"^(?!.*党费).*((有没有|有|给不给|发不发|给|发)[^，。,]{0,4}(丧葬费|抚恤金|丧葬补助)|"
                                     r"(丧葬费|抚恤金|丧葬补助)[^，。,]{0,4}(没|吗|么|不))",
    # Public holidays (七一放不放假) are the State Council's calendar, not the party's.
    "public holidays": r"放不放假|放假(吗|不|没|几天)|放几天假|休不休息|调休",
    # Weather given as the reason a meeting is called off or a member stays away is context, not the question.
    "weather and chit-chat": r"^(?!.*(助手|公众号|取消|改期|推迟|改天|通知|请假|签到)).*(天气|会不会下|下不下雨|下雨不|下雨吗|"
                             r"带伞|冷不冷|热不热)|象棋|下棋|讲个?笑话|唱首?歌",
    "opinions and gossip": r"(书记|支书|村长|主任|干部|他|她)(这个)?人(咋样|怎么样|好不好|行不行|靠谱|靠不靠谱)|人品|"
                           r"^(?!.*(处分|警告|察看|撤销|纪律|党纪|开除)).*(升官|提拔|调走)",
    "party history": r"(哪一?年|什么时候|哪天)(成立|建立|建的党)|党史|长征|(?:党的|中共)一大|"
                     r"一大(?:会址|代表|召开|是在|在哪|哪年|啥时候)|遵义会议|毛主席|毛泽东|周总理|"
                     # When the oath, the charter or the flag took the form they have: history, not how to use them.
                     r"(誓词|宣誓|党章|党旗|党徽)[^，。,]{0,12}(哪一?年|什么时候|啥时候|几几年)[^，。,]{0,4}(改|修改|定下|制定|通过|开始用)",
    # 打卡 is 签到's synonym (替俺打卡: a check-in for someone); 给查住了 is being caught, not an errand.
    "errands and other apps": rf"^(?!.*(党费|df)).*(帮|给|替){_ME}?(充|买|订|查(?!住)|缴|打(?!卡|工)|叫|找|交)(?!的|.{{0,3}}(党|df))|"
                              r"(转发|发到|发在|转到).{0,8}(微信群|群里|朋友圈)|话费|电费|"
                              r"微信密码|改密码|抖音|快手|化肥|农药|施肥|打药|病虫害|缺.{0,2}肥",
    # A relative's fight or prison term told as part of a political review is the review's (join-political-review).
    "family and land quarrels": r"^(?!.*(处分|纪律|党纪|开除|政治审查|政审)).*(纠纷|吵架|打架|闹矛盾|分家|赡养|遗产|离婚|彩礼)",
    "gaming points and apps": r"刷(?:积)?分|刷学时|积分.{0,6}(刷|涨得快|攒得快)",
    "who made this service": r"(哪个|哪家|什么)(公司|厂家|企业|单位)(做|开发|研发|搞|弄|出)的",
    # A contract's term, a share of the collective's income, who belongs to the collective, housing aid: how the
    # village decides such matters (四议两公开, a 村民会议's vote) is ours, the matters themselves are not.
    "land and collective assets": r"^(?!.*(党|支部|书记|四议|两公开|村务|公开|村民会议|村民代表|表决|决议|方案|程序|开会|"
                                  r"讨论|商量|同意)).*(土地承包|承包到期|承包期|延包|分红|成员资格|外嫁女|耕地|林地|山林|"
                                  r"危房|易地搬迁)",
    # Village self-government under the 村民委员会组织法, past what the entries say (who may vote, the
    # committee's size and term, the 村民代表会议's quorum): how 村民代表 and 村民小组长 are chosen and how
    # long they serve, recalling a 村委会 member, how the 村委会 vote is run (proxies, a spoilt or lost ballot).
    # The branch decides none of it.
    # 村民代表会议 is ours; 党小组长 (小组长) is ours; a question naming the party or the branch is left to the search.
    "village self-government": r"^(?!.*(代表会|会议|开会|监督|账)).*村民代表.{0,10}(选|产生|任期|几年|一届|届|连任|"
                               r"名额|几户|换人|换掉|多少个|多少名|几个|资格|条件)|^(?!.*党小组).*(村民小组(长|会议|会)|"
                               r"(?<![党小])组长.{0,8}(选|产生|任期|几年|一届|不想干|不干了|谁当|谁来当))|"
                               r"^(?!.*(党|支部|支委|书记))(?=.*(村民委员会|村干部|村民|主任|委员)).*(罢免|罢掉|撤掉|撤换|"
                               r"拉下来|撸下来|选举委员会|流动票箱|海选|委托.{0,8}投票|代投|自荐|(选举|投票).{0,8}不在家|"
                               r"村民委员会.{0,4}(选举|换届).{0,16}(有效|提名|当选|得票|多少票|几票|票数|过半)|"
                               r"(选票.{0,4}|票)[^，。,]{0,4}(写错|填错|画错|划错|涂错|弄错|填坏|写坏|弄坏|作废|废了|再要|重领|再领|"
                               r"换一张|补一张|补发|丢了))|"
                               # The village's accounts and who keeps them (会计, 出纳, 报账员): the 村委会's and the
                               # township's. A secretary who is also the director (org-cross-appointment) stays ours.
                               r"(会计|出纳|报账员)[^，。,]{0,14}(兼|由谁|谁来当|谁当|能不能当|可以当|可不可以当|怎么定|咋定)|"
                               r"兼[^，。,]{0,8}(会计|出纳|报账员)|"
                               # Auditing them is the township's and the county's; making them public (村务公开) is ours.
                               r"^(?!.*党费).*审计",
    # Taxes on money a member receives (慰问金, an allowance): the tax office's. Whether dues are counted on the
    # wage before or after tax is the dues entries'.
    "taxes": r"^(?!.*(党费|df)).*(交税|缴税|纳税|个税|扣税|个人所得税|报税)",
    # Inspection tours (巡察, 巡视): what they check is their own programme, which no entry describes.
    "inspection tours": r"巡察|巡视",
    # The village's other bodies and their rules: 红白理事会, 村规民约, 调解, 治保, 老年协会. A question about a
    # member's own banquet (酒席, 礼金, 桌数) is discipline-banquet's, which names the 红白理事会 too.
    "other village bodies and rules": r"^(?!.*(党员|酒席|摆酒|办酒|酒宴|婚丧|礼金|桌)).*(红白理事会|理事会|村规民约|村民公约|"
                                      r"道德评议|禁毒|禁赌|老年协会|老年人协会|老协|调解委员会|人民调解|调解员|治保|"
                                      r"治安联防|巡逻队|乡贤)",
    # Other organizations: the Youth League (推优 of a 团员 is join-activist-how's), the women's federation,
    # the militia and the army (a transfer of membership on joining or leaving the army is ours).
    "youth league, women's federation, militia": r"^(?!.*(推优|群团|党|支部|组织关系|档案)).*(团员|团费|团支部|团组织|退团|离团|团委|"
                                                 r"少先队|妇联|妇代会|妇女主任|妇女代表|妇女执委|妇女节|三八节|民兵|"
                                                 r"武装部|退伍|退役|复员|征兵|入伍|应征)|退团|团籍|团员身份",
    "people's congresses": r"人大代表|人民代表大会|[县乡镇市]人大|政协",
    # WeChat or the phone itself going wrong (messages not arriving, a spinning wheel, the app crashing): not
    # the assistant. A question that names the assistant, the branch or what one does with it (签到, 请假,
    # 绑定, 通知, 开会) stays ours: bot-voice, bot-rebind and the notices' entries answer those.
    "WeChat and the phone themselves": r"^(?!.*(助手|公众号|这个号|支部|书记|党|签到|请假|绑|通知|开会|会议|组织|学习)).*"
                                       r"(微信|手机)[^，。,]{0,8}(收不到|发不出|发不了|打不开|闪退|卡住|卡死|转圈|登不上|"
                                       r"登不进|没声音|没有声音|听不了|听不到|黑屏|死机)",
    # Schooling aid for a member's children or grandchildren: no rule gives members' families any; the help a
    # member in hardship or hit by a disaster gets is answered by its entries.
    "aid for members' children": r"^(?!.*(困难|灾|事故|慰问|党费|去世|过世|病逝))(?=.*(上学|大学|读书|考上|学费|入学|升学|"
                                 r"幼儿园|小学|初中|高中|中专|技校)).*(党员|干部).{0,8}(子女|孩子|娃|儿女|孙子|孙女|后代|"
                                 r"家的|家里).{0,12}(补助|补贴|奖励|奖学金|助学|优惠|减免|照顾|加分)",
    # Taking the exam for such a job; a member who got one and moves his membership is ours.
    "civil-service jobs": r"^(?!.*(党费|组织关系|党课|两委)).*((考|报考|招|报名|录取).{0,6}(公务员|选调生|村官|事业编|"
                          r"三支一扶|西部计划)|(公务员|选调生|大学生村官|事业编|三支一扶|西部计划).{0,8}(报考|考试|报名|"
                          r"招考|招聘|条件|怎么考|咋考))",
    # Buying a badge or a flag; a flag on a coffin and a bought 党员证 are ours (death-party-flag, member-proof).
    "buying party regalia": r"^(?!.*(党员证|遗体|去世|盖)).*(党徽|党旗|徽章|胸章|胸牌).{0,8}(买|定做|订做|卖|多少钱)",
}
NEAR_MISSES = re.compile("|".join(f"(?:{pattern})" for pattern in NEAR_MISS_KINDS.values()))
# Questions of this domain that only the branch or the township can answer, by kind: who holds an office, when
# a place is open or where a vote is held, what next month's activity is about; and a refund of dues, which no
# rule we cite covers. They are declined as in the domain ("no exact answer yet", with the offer to ask the
# secretary), not as "not ours".
_NAME_ASKED = r"(?:是谁|叫啥|叫什么|姓啥|姓什么|是哪个|是哪位)(?:名字)?[啊呀呢哦嘛吗]?(?=$|[\s，。,？?])"
LOCAL_FACT_KINDS = {
    "who holds an office": rf"(书记|主任|委员|组织员|村官|村长|会计|组长)[^，。,\s]{{0,3}}{_NAME_ASKED}",
    "hours and places": r"开不开门|几点(?:钟)?(?:开门|关门|下班)|(投票站|投票点).{0,4}(设在|在哪|哪里)|"
                        # Whether someone is in today: the branch knows, the content cannot.
                        r"(书记|支书|主任|村长|会计|组织员)[^，。,]{0,3}(今天|明天|这会儿|现在|这两天|上午|下午|晚上)"
                        r"[^，。,]{0,3}(在|上班|来)[^，。,]{0,8}?(不在|不|吗|么|没)(?=$|[\s，。,？?])",
    # What a past meeting said or decided: its record and the people there know, no entry does.
    "a past meeting's content": r"(上回|上次|上个月|前天|昨天|那天|上礼拜|上周)的?(党员大会|支部大会|主题党日|党日|党课|会|组织生活会)"
                                r"[^。]{0,24}(讲的啥|讲了啥|讲了什么|讲的什么|说了啥|说的啥|定了啥|定了些啥|定了什么|啥内容|什么内容)",
    "a coming activity's topic": r"(下个?月|这个?月|下回|下次|明天|后天|下礼拜|下周)的?(主题党日|党日|党课|学习|组织生活会)"
                                 r".{0,4}(主题|内容|讲啥|讲什么|学啥|学什么)",
    # What to wear to the oath or a meeting, how long a list of candidates is posted: the branch's own custom and
    # the higher committee's notice; the oath itself (join-oath) and how candidates are chosen are answered.
    "dress": r"穿(什么|啥|啥子|哪种|怎样的)(衣服|服装)?|着装|服装要求|正装",
    "days a list is posted": r"公示[^，。,]{0,6}(几天|多少天|多久|多长时间)",
    # 党务公开 (the organization making its own affairs public): no entry covers it; 村务公开 and 两公开 are the
    # village's and are answered.
    "the party's own publicity": r"党务公开|党费[^。]{0,10}(账|收支)[^。]{0,12}公开|公开[^。]{0,8}党费[^。]{0,4}(账|收支)",
    # Changing a sponsor or a contact person (one who died, one the applicant does not get on with), taking an
    # application back, a health check before joining, filling a committee seat left empty (补选), a lost medal
    # reissued: each is decided by the branch and the committee above under rules no entry gives. Who may be a
    # sponsor (join-sponsors) and how the 50-year medal is given are answered.
    "changing a sponsor": r"(介绍人|培养联系人|联系人)[^，。]{0,24}(换|更换|调换|去世|走了|病故|病逝|过世|不在了|调走|合不来)|"
                          r"(换|更换|调换)[^，。]{0,6}(介绍人|培养联系人|联系人)",
    "taking an application back": r"(申请书|申请)[^，。]{0,16}(撤回|撤销|要回来|拿回来|退回来|退给我|不想申请了|不想入了|不申请了)",
    "a health check before joining": r"(入党|发展党员)[^。]{0,20}体检|体检[^。]{0,20}(入党|发展党员)",
    "filling a seat": r"(要不要|咋|怎么|如何|能不能|需不需要|用不用|得不得)[^，。]{0,4}(补选|增补)|(补选|增补)[^，。]{0,8}"
                      r"(咋|怎么|要不要|程序|流程|手续|几个|吗|不$)",
    # Medals for other lengths of membership (四十年的有没有): some places give them, none the centre does.
    "medals for other years": r"(二十|三十|四十|六十|[2346]0)年的[^。]{0,4}(纪念章|奖章)?[^。]{0,2}(有没有|有吗|有不|发不发|给不给)",
    # Writing an application again after years without being chosen; whether a relative may be one's contact
    # or sponsor; whether an activist (not yet a member) pays dues; how a 党员大会 votes on village matters.
    "an application written again": r"重新(写|交|递)[^。]{0,6}(申请书|一份|一封)",
    "relatives as contacts": r"^(?!.*(预备|留党察看)).*(培养联系人|联系人|介绍人)[^。]{0,16}(亲戚|舅舅|叔叔|姑姑|姨|自家人|亲属|本家|家里人)|"
                             r"^(?!.*(预备|留党察看)).*(亲戚|舅舅|叔叔|姑姑|自家人|亲属|本家|家里人)[^。]{0,16}(当|做|作)[^。]{0,4}"
                             r"(培养联系人|联系人|介绍人)",
    "dues before joining": r"(积极分子|发展对象|申请人)[^。]{0,10}(交|缴)[^。]{0,3}(党费|df)",
    "how a vote is taken": r"^(?!.*(发展党员|入党|预备|转正|选举|选支委|换届)).*(举手[^。]{0,8}(还是|或者)[^。]{0,6}(写票|投票|无记名|票)|"
                           r"(写票|无记名)[^。]{0,8}还是[^。]{0,4}举手)",
    "a lost medal": r"(纪念章|奖章|勋章)[^，。]{0,12}(丢|掉了|遗失|找不到|补发|补办|再领)",
    # Which posts in a chat group break discipline (转发小道消息): the rules on speech, which no entry covers; whether
    # a meeting held in a WeChat group counts (meeting-online) is answered.
    "rumours": r"(小道消息|谣言|传谣|造谣|乱转|转发)[^。]{0,14}(纪律|违纪|处分|违反|犯错)",
    # The exam after a training course and its question bank: the county's or the township's.
    "exams of a course": r"(培训|党课|积极分子|发展对象)[^。]{0,12}(考试|考题|试题|考些啥|考啥|考什么)|题库",
    # A campaign's programme (党纪学习教育, 主题教育): set by the central and higher committees each time; what a
    # member studies in general (study-content) is answered.
    # A named person's case before the discipline commission (谈话, 留置): the commission's, which no entry covers.
    "a case under investigation": r"留置|双规|(纪委|监委)[^。]{0,10}(叫去|带走|调查)",
    # The format of the application to become a full member: the branch gives its own; how 转正 goes is answered.
    "the conversion letter": r"转正申请(书)?[^。]{0,10}(咋写|怎么写|如何写|格式|几页|字数|模板|范文|样本)",
    "a campaign's programme": r"(党纪|党史|主题|专题)学习教育|主题教育|两学一做|不忘初心[^，。,]{0,4}牢记使命",
    # Web addresses of the party's systems (where to transfer membership online): the township gives them.
    "web addresses": r"(网址|网站|链接|网页)[^，。,]{0,4}(是多少|是啥|是什么|在哪|发我|发一下|给我|多少)",
    # Whether a member reports his own wedding or a new car to the organization: cadres' personal reports are set
    # by their own rules, which no entry covers; a member's banquet (discipline-banquet) is answered.
    "personal reports": r"(结婚|离婚|再婚|生孩子|生二胎|买房|买车)[^，。,]{0,8}(报告|报备|请示)",
    # How long the discipline commission takes over a report: its own rules, which no entry gives; where and
    # how to report (member-report-violation) is answered.
    "time to answer a report": r"(举报|检举|反映)[^，。,]{0,10}(多久|多长时间|几天|啥时候|什么时候)[^，。,]{0,4}(回复|答复|回音|"
                               r"处理|结果|说法|回话)",
    "refunds of dues": r"党费.{0,12}(退回|退还|退给|退钱|能不能退|能退吗|能退不|可以退)(?!休|党)",
    # The party organization's own money: its working funds, the 服务群众 funds, what was allocated for an
    # activity room, a 误工 allowance for a meeting. The township and the branch know the figures; no rule we
    # cite gives them. What dues pay for (dues-usage) and 慰问金 (care-weiwenjin-amount) stay ours to answer.
    "the organization's funds": r"^(?!.*(党费|慰问|困难|灾|事故|活动(?!室|场所)|发展党员|花钱|送礼)).*(经费|拨款|拨了|拨多少|拨的|专项资金|运转资金|误工费|误工补贴|"
                                r"(钱|费用|资金).{0,6}(谁出|谁来出|哪里出|哪出|从哪|上面拨|上级拨|村里出)|"
                                r"上面给.{0,8}补助|(建|盖|修|装修).{0,8}(补助|补贴))",
    # Allowances and perks of old members (a 生活补贴 for those who joined before 1949, a 高龄 allowance, free
    # rides) and a regular allowance for any member (每月的补贴): the organization department's and the
    # township's, by place. A member in hardship, one hit by a disaster, the 慰问金, dues taken from an allowance
    # and how the 50-year medal is given are answered by their entries.
    "perks of members": r"^(?!.*(慰问金|困难|灾|大水|洪|冲塌|冲垮|塌了|着火|失火|地震|冰雹|事故|党费|七一|纪念章.{0,6}(怎么|咋|哪|领|申请|发给))).*(老党员|老干部|"
                        r"党龄|光荣在党|建国前|解放前|发展党员.{0,4}([二三四五六七八九]十|[0-9]{2})多?年)"
                        r".{0,16}(待遇|补贴|补助|津贴|奖金|发钱|发点钱|给钱|给不给.{0,4}钱|免费|优惠|体检|高龄补贴|高龄津贴)|"
                        r"^(?!.*(慰问|困难|灾|事故|党费|扣|生病|住院|去世|过世)).*(党员|发展党员).{0,10}(每个月|每月|一个月|"
                        r"每年|一年|固定|按月|月月).{0,8}(补贴|津贴|工资|补助|生活费|发钱|给钱)",
    # Accounts on the party's other platforms (the 党员信息系统, 学习强国, a province's 智慧党建): the branch or the
    # township holds them. The assistant's own binding is ours (bot-bind, bot-bind-failed).
    # Whether one must log in every day is meeting-study-no-ranking's; a lost password or an account is not.
    "accounts on party platforms": r"^(?!.*(支部助手|绑定|公众号|党费|组织关系)).*((信息系统|管理系统|学习强国|强国|智慧党建|党建云|"
                                   r"云平台|党建平台|灯塔|e家|共产党员网|app|软件|小程序|平台).{0,12}(密码|账号|帐号|"
                                   r"用户名|登不上|登不进|进不去|注册|锁|激活|(怎么|咋|如何|在哪)(登录|登陆))|"
                                   r"(密码|账号|帐号|用户名).{0,12}(信息系统|管理系统|学习强国|智慧党建|党建云|平台|灯塔|e家))",
    # Branch practices no entry describes (设岗定责, 党员联系户, 示范户 plaques, reserve cadres, a secretary's
    # yearly assessment) and honours (优秀共产党员, 先进基层党组织: criteria and rewards set each year). What
    # the 民主评议 grades mean and what dues may reward are answered by their entries.
    "local party practices": r"^(?!.*第一书记).*(设岗定责|联系户|示范户|亮身份|承诺践诺|后备干部|后备力量)|"
                             r"^(?!.*(评议|测评|第一书记|积极分子|发展对象|预备|转正)).*(书记|支委|组长|委员|村干部|两委).{0,8}(考核|年终考评|"
                             r"打分)",
    "honours and awards": r"^(?!.*(评议|党费)).*((优秀共产党员|先进基层党组织|先进党组织|优秀党务工作者|两优一先)"
                          r".{0,12}(奖|条件|标准|怎么评|咋评|评选|名额)|(优秀党员|评优|评上优秀|评为优秀).{0,8}(奖金|"
                          r"奖多少|发钱|多少钱|给钱|奖品))",
    # Which organizations are 软弱涣散 and how they are set right: the county's party committee names them each
    # year by its own list. Where a 第一书记 is sent (org-first-secretary-where, which names such villages) is
    # answered.
    "weak organizations": r"^(?!.*(第一书记|派)).*软弱涣散",
    # The village work team (驻村工作队): how many, who, for how long is the county's. The 第一书记 it works with
    # is answered by its entries and the passages.
    "the village work team": r"^(?!.*第一书记).*工作队[^，。,]{0,10}(几个|多少|谁|哪|多久|几年|啥时候|什么时候|换|干啥|干什么|管啥)",
    # Whether cadres keep office hours or a duty rota (坐班, 值班): set by the township and the village. When
    # meetings and check-in open is answered.
    "cadres' office hours": r"(书记|支书|村干部|两委|支委|村官|主任|干部|委员|村部|村委会|党群服务中心)[^，。,]{0,10}"
                            r"(坐班|值班|轮班|轮流上班|天天上班|每天上班|几点上班|上班时间)",
    # How many new members the branch may take this year: the county's plan for 发展党员 sets it, no entry does.
    # How the candidates of an election outnumber the seats (election-candidates) is answered.
    "quotas for new members": r"(发展党员|入党)[^，。,]{0,6}(名额|指标)|(名额|指标)[^，。,]{0,6}(发展党员|入党)|"
                              r"(今年|明年|每年|一年)[^，。,]{0,6}(能|可以|要|给)?发展(几个|多少)(个)?(党员|人)",
    # Running the premises and the paperwork, which no entry describes: an organization's seal (lost, recut, who
    # keeps it), how many copies of a paper to hand in, the activity room's keys and lending it for a banquet or
    # a game. What the room must be (org-wuyou-place) and how a member's own banquet is judged stay answered.
    "seals": r"(公章|印章|章子)[^，。,]{0,6}(丢|掉了|遗失|找不到|被偷|被盗|刻|换新|谁管|谁保管|谁拿着|在谁|保管|作废|坏了)",
    "copies of papers": r"^(?!.*记录).*(一式[几两二三四五]份|(交|写|填|印|打印|复印|准备|要|递|报)[^，。,\s]{0,3}(几|多少|好几)份)",
    "keys and lending of the premises": r"(活动场所|活动室|党群服务中心|会议室|村部)[^，。,]{0,10}(钥匙|借给|借出去|租给|出租|"
                                        r"租出去|办酒|摆酒|酒席|办席|婚礼|办丧事|打牌|麻将)",
    # How old a secretary, a committee member or a village cadre may be, and when one must step down: set by the
    # county's organization department. The age to apply for membership (join-who-can-apply) and to vote in the
    # 村委会 election (org-village-voters) are answered.
    "cadres' age limits": r"^(?!.*(选|投票|入党|发展党员|党费|评议)).*(书记|支委|委员|村干部|两委|村官|主任)[^，。,]{0,12}"
                          r"(年龄限制|年龄上限|年龄要求|年龄界限|超龄|到龄|(多大|多少|几)(岁|年纪)|岁数.{0,4}(限制|要求|上限|规定))",
    # Removing a secretary or a committee member from office (by the township's party committee): no entry says
    # how. 撤销党内职务 as a sanction (member-discipline-types) and calling off a meeting (bot-cancel-meeting) stay
    # answered; recalling a 村委会 member is village self-government's (a near miss above).
    # What each committee member does day to day (组织委员, 宣传委员, 纪检委员…): no rule we cite divides the work;
    # the branch does. How the committee is made up and elected (org-committee) stays answered.
    "committee members' duties": r"(组织|宣传|纪检|青年|统战|保密|群工)委员[^，。,]{0,10}(负责|管啥|管什么|管哪些|干啥|干什么|"
                                 r"做啥|做什么|职责|分工|具体管|工作内容)|(各个?|每个)?(支委|委员)[^，。,]{0,4}(怎么|咋|如何)分工",
    # The terms of offices above the village (the township's or the county's party committee, its secretary, a
    # 乡长 or 镇长): the party's rules for those committees, which no entry covers. A village organization's term
    # (org-term) stays answered.
    # How those committees are elected and how many members they have, likewise.
    "offices above the village": r"(乡镇|乡|镇|县|市)(委书记|党委书记|党委|委|政府|书记|乡长|镇长|县长|领导班子|班子|领导)[^，。,]{0,6}"
                               r"(一届|任期|干几年|几年一换|换届|怎么选|咋选|选出来|选举产生|怎么产生|咋产生|由谁选|谁选|"
                               r"设几个|几个委员|多少个?委员|委员.{0,4}(几个|多少))",
    "removing a secretary": r"^(?!.*(处分|撤销党内职务|党纪|违纪|纪律|会议|开会|把会|会撤|权利|表决权)).*((书记|支委|支部委员)"
                            r"[^，。,\s]{0,6}(免职|撤职|撤换|撤掉|撤了|撤下|拿掉|拿下|换掉|撸掉|撸了|撸下|罢免|罢掉|罢了|免掉|免了|下课)|"
                            r"(撤掉|撤了|撤销了?|免去|免了|免掉|罢免|罢了|拿掉|拿下|换掉|撸掉|撸了)(他|她)?的?(支部书记|书记|支委))",
}
LOCAL_FACTS = re.compile("|".join(f"(?:{pattern})" for pattern in LOCAL_FACT_KINDS.values()))
# A question that speaks of a member's death is about what follows a death: among close candidates, the entry
# tagged 去世 answers it (俺老头走了 他欠的党费要补不 asks about dues after a death, not about back dues in general).
# The entries tagged 去世 are about a member's own death; an answer already tagged 病逝 (a death in a member's family)
# is about a death too and stays. "人没来" is no death; "上个月刚走" is one, "刚走访" is not.
DEATH_CUE = re.compile(r"走了|(?:刚|才|已经)走(?![访路亲动出进到过开远])|去世|过世|没了|不在了|病逝|人没(?![来到去有在])|老了人|咽气")
DEATH_TAG = "去世"
DEATH_TAGS = frozenset({DEATH_TAG, "病逝"})
CUE_CONFIDENCE = 0.3
# A question about the 党员大会 that counts votes cast (赞成, 得票, 多少票) asks whether a vote passed or elected
# someone: the entry on the meeting's attendance (tagged VOTE_FROM) says only whether it may be held, so among
# close candidates the entry on its votes answers: an election's (ELECTION_TAGS) when the question speaks of
# electing (选), else a resolution's (RESOLUTION_TAGS: admitting a member). Other meetings' attendance and votes
# (支委会, 村民会议) are left as found.
VOTE_CUE = re.compile(r"赞成|得票|多少票|几票|几张票")
ELECTING = re.compile(r"选|得票")
VOTE_FROM = frozenset({"党员大会", "到会人数"})
ELECTION_TAGS = frozenset({"投票", "当选"})
RESOLUTION_TAGS = frozenset({"表决"})


@dataclass(frozen=True)
class Redirect:
    """Words that say which entry a question is about, whatever else its words match: when the answer found
    carries one of from_tags and not to_tag, the best of the top three candidates tagged to_tag answers instead,
    if it matched well enough (CUE_CONFIDENCE); with anywhere, the first entry tagged to_tag, ranked or not
    (its words need not be in the question at all) — and such a cue also answers with the best candidate when it
    is tagged to_tag but was not good enough alone."""

    cue: Callable[[str], bool]
    from_tags: frozenset[str]
    to_tag: str
    anywhere: bool = False


# How to ask about something that is also a command ("我想问签到的规定 一发签到它就给我签到了"): the command's
# own help matches the command word, but the member asks how to put a question (bot-ask, tagged 提问). Both
# halves must be there: wanting to ask or hear a rule, and the command run instead. "一回签到就说签到码不对"
# reports what the command said, which its own help answers.
WANTS_TO_ASK = re.compile(r"问|打听|咨询|了解|规定|规矩|说法")
COMMAND_RUN_INSTEAD = re.compile(r"一(发|回|打)[^，。,]{0,8}(它|就)[^，。,]{0,3}(给|帮|替)?(我|俺)?(签|绑|请假|报名)|"
                                 r"(它|助手)[却就倒]?(让|叫|给)(我|俺)(签|绑|请假|报名)|(当成|当作|以为是)[^，。,]{0,6}命令|"
                                 r"(当成|当作|以为)[^，。,]{0,4}(要|想)(签到|绑定|请假|报名)")
# A member who cannot pay (交不起, 想免交) asks for relief, whatever the situation named (领低保 has its own rate).
CANNOT_PAY = re.compile(r"交不起|交不上|拿不出|不交了|能不能不交|可不可以不交|免交|减免|缓交")
# Paying a sum of one's own choosing (我想每月交100行不行): paying more than the rate is the member's choice.
CHOSEN_SUM = re.compile(r"想[^，。,]{0,6}交[^，。,]{0,2}(?:[0-9]+|[一二两三四五六七八九十百]+)(?:块|元)?(?:钱)?[^，。,]{0,4}"
                        r"(?:行不行|行吗|可以吗|中不中|可不可以|成不成|行不)")
RESTORE = re.compile(r"恢复")
# Whether messages in a WeChat group count as a meeting (在群里发消息就算开会了 这算不算), whoever is asking (members
# working away, 外地打工的党员, are 流动党员, whose own entries otherwise take the question).
GROUP_MEETING = re.compile(r"(微信群|群里)[^。]{0,16}(开会|开了会|组织生活|党课|学习)")
REDIRECTS = (
    Redirect(lambda question: WANTS_TO_ASK.search(question) is not None
             and COMMAND_RUN_INSTEAD.search(question) is not None,
             frozenset({"使用说明"}), "提问", anywhere=True),
    # A probationary member's dues ("预备党员…党费从九月算还是十一月算", "乡里还没批…党费现在就得交吗"): the probation and
    # approval entries match the dates and the 预备 words, the question is about dues (dues-probationary).
    Redirect(lambda question: "党费" in question or "党非" in question,
             frozenset({"预备期", "预备党员"}), "党费"),
    Redirect(lambda question: CANNOT_PAY.search(question) is not None, frozenset({"低保"}), "减免"),
    # Whether membership can be restored (还能恢复不) once it was stopped: restoring it, not losing contact.
    Redirect(lambda question: RESTORE.search(question) is not None, frozenset({"失联"}), "恢复党籍"),
    Redirect(lambda question: GROUP_MEETING.search(question) is not None, frozenset({"流动党员"}), "微信群"),
    Redirect(lambda question: SEVERAL_MONTHS_AT_ONCE.search(question) is not None, frozenset({"党费"}), "预交"),
    Redirect(lambda question: CHOSEN_SUM.search(question) is not None, frozenset({"党费"}), "多交", anywhere=True),
)

# The cues that alone name their entry also read across the parts of a message of several questions.
WHOLE_MESSAGE_REDIRECTS = tuple(redirect for redirect in REDIRECTS if redirect.anywhere)

# Words that mark a question as being about this domain, besides the domain dictionary and synonyms. A
# question with none of them ("低保怎么申请", "今天几号") weighs against answering.
DOMAIN_MARKERS = frozenset("""
党 支部 支委 书记 支书 组织 开会 会议 委员 选举 村民 村务 村干部 两委 走访 慰问 看望 探望 评议 批评 处分 申诉 公开
四议 提议 商议 审议 决议 谈心 谈话 学习 学时 预备 签到 请假 绑定 助手 公众号 通知 菜单 命令 语音 问问题 帮助
收到 代签 关注 功能 绑 签 二维码 会场 政策 政审 账目 生活会 不合格 回村 码 锁住 打字 语音 消息 个人信息 退出 这一步
""".split())
# Dictionary words that are everyday topics on their own: they do not make a question about this domain.
EVERYDAY_WORDS = frozenset("低保 最低生活保障金 生病住院 病逝 重阳节 七一 中秋 春节 元旦 老干部 集体经济 活动场所".split())


@dataclass(frozen=True)
class Suggestion:
    id: str
    question: str


@dataclass
class Answer:
    """What the search decided about one question."""

    question: str
    status: str
    confidence: float
    answer: str = ""  # the answer text itself (for a passage, its whole text)
    source: str = ""  # "《中国共产党章程》第九条"
    source_name: str = ""
    article: str = ""
    local: bool = False
    entry_id: str | None = None  # a FAQ id, or "<doc id>#<n>" for a passage
    kind: str | None = None  # "faq" or "passage"
    title: str = ""  # for a passage: "title · heading"
    suggestions: list[Suggestion] = field(default_factory=list)
    # Declined, but the question speaks of party matters: "no exact answer yet" rather than "not ours".
    in_domain: bool = False
    # The other questions of a message that asked several (the first is answered): each one's entry.
    others: list[Suggestion] = field(default_factory=list)
    # Worked out for the asker from figures the question gives (content/computed.py), not an entry's own text.
    computed: bool = False
    # The best candidates whatever the thresholds, best first: (id, confidence); for evaluation.
    ranked: list[tuple[str, float]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {"question": self.question, "status": self.status, "answer": self.answer, "source": self.source,
                "local": self.local, "confidence": round(self.confidence, 3), "id": self.entry_id,
                "kind": self.kind, "suggestions": [{"id": s.id, "question": s.question} for s in self.suggestions]}


# Where one message asks a second question: "还有就是…", "另外…", "再问一下…", or a sentence end.
_NEXT_QUESTION = re.compile(r"[？?；;。！!]+|\s*(?:还有就是|还有一个|还有个|另外还有|另外|再问一下|再问个|再问|还想问一下|还想问|"
                            r"(?<=\s)还有|"
                            r"顺便问一下|顺便问|第二个|第二(?![年天月回次批届])|二是)")
# A part with fewer Chinese characters than this is no question of its own ("我想问两个事").
PART_MIN_CHARS = 4


# What people say around a question when they dictate it ("喂 那个我想问一哈 就是…"): words no entry has, which
# only make the question look as if it said something the content does not.
_FILLERS_SAID = re.compile(r"喂+|嗯+|呃+|哎+|唉|那个|就是说|就是|我想问(?:一下|一哈|下|个事|两个事|几个事|问)?|"
                           r"想问(?:一下|一哈|下)?|我问(?:一下|一哈|下|你|个事)?|是(?:不是)?(?:支部)?助手(?:不|吗|吧|嘛)|问一下|问一哈|问下|请问一下|小助手|这个助手|"
                           r"你好|您好|麻烦(?:问一下|你)?|打扰(?:一下)?|一个是|那啥|咋说呢|怎么说呢|是这样的|这样子|"
                           r"你?(?:帮|给)(?:我|俺)(?:看看|看一下|看一哈|瞧瞧|说说|讲讲|说一下|讲一下|说道说道)")


# "我是村支书兼村主任，" — who is asking, said before the question, in a clause of its own.
_SELF_INTRODUCTION = re.compile(r"^((?:我|俺)(?:是|当)[^，。,？?！!\s]{2,14}(?:[，,\s]*一肩挑)?)[，。,\s]+(?=\S{5})")


def without_fillers(question: str) -> str:
    """The question without the words people say around it; the question itself when little would be left."""
    bare = " ".join(_FILLERS_SAID.sub(" ", question).split())
    return bare if sum(len(run) for run in _CJK.findall(bare)) >= 2 else question


# What makes a clause a question: a dictated message has no question marks, only pauses. 几 in a figure
# (几十年, 十几个, 几百块) asks nothing: "我入党几十年了" is no question of its own; nor do 前几年, 好几回, 我们几个.
_ASKS = re.compile(r"[吗么嘛呢]|啥|咋|怎|什么|多少|多久|多长|(?<![十百千万前这那头好们])几(?![十百千万])|哪|谁|能不能|要不要|是不是|有没有|中不中|行不行|可不可以|[^一]不$|没有$|"
                   # 算不算, 够不够, 对不对: a word, 不, the word again.
                   r"([\u4e00-\u9fff])不\1")


# Where a dictated message pauses: a space, or the comma a recognizer sometimes writes instead.
_CLAUSE_BREAK = re.compile(r"[\s，,]+")


def _clauses_to_questions(text: str) -> list[str]:
    """Clauses between pauses, joined until each part asks something: "我儿子想入党 申请书交给哪个 交了以后多久有人
    找他谈话" is two questions; a trailing clause that asks nothing joins the last one."""
    parts: list[str] = []
    current = ""
    for clause in _CLAUSE_BREAK.split(text):
        if not clause:
            continue
        current = f"{current} {clause}".strip()
        if _ASKS.search(clause):
            parts.append(current)
            current = ""
    if current:
        if parts:
            parts[-1] = f"{parts[-1]} {current}"
        else:
            parts.append(current)
    return parts


def split_questions(question: str) -> list[str]:
    """The questions one message asks, in order (one part when it asks one)."""
    parts = [clause for part in _NEXT_QUESTION.split(question) for clause in _clauses_to_questions(part.strip(" ，,、"))]
    # Counted without the words said around a question: "喂 是支部助手不" asks nothing of the content.
    return [part for part in parts
            if sum(len(run) for run in _CJK.findall(_FILLERS_SAID.sub(" ", part))) >= PART_MIN_CHARS]


def clip_question(question: str, limit: int = QUESTION_MAX_CHARS) -> str:
    """The part of a question the search reads: all of it up to limit characters, else its beginning (ended
    at a sentence end in the last third of the limit when there is one). Done before any other step."""
    if len(question) <= limit:
        return question
    head = question[:limit]
    ends = [match.end() for match in _SENTENCE_END.finditer(head, limit * 2 // 3)]
    return head[:ends[-1]] if ends else head


def source_line(source: str, article: str, local: bool) -> str:
    line = f"来源：《{source}》{article}"
    return line + "（这是各地常见做法，具体以本乡镇党委的要求为准）" if local else line


# ---------------------------------------------------------------- text analysis


# A lone figure written into a term (3会1课, 5必访, 4议2公开) is spelled out so the term is found; figures of two or
# more digits (3000, 2019) and decimals stay figures.
_LONE_DIGIT = re.compile(r"(?<![0-9.])[0-9](?![0-9.])(?=[\u4e00-\u9fff])|(?<=[\u4e00-\u9fff])(?<![0-9.])[0-9](?![0-9.])")
_DIGIT_WORDS = dict(zip("0123456789", "零一二三四五六七八九"))


def _spell_lone_digits(text: str) -> str:
    return _LONE_DIGIT.sub(lambda match: _DIGIT_WORDS[match.group()], text)



# 入党 is said split around what happened (入了党, 没入上党, 入不了党): jieba then cuts 上党 (a place) or 入|了|党,
# and the question loses the word it is about. The parts are put back together.
_SPLIT_VERB = re.compile(r"入(?:了|上|成|过)党|入不(?:了|上|成)党")


def _joined_verbs(text: str) -> str:
    return _SPLIT_VERB.sub(lambda match: "不能入党" if match.group().startswith("入不") else "入党", text)


_CJK = re.compile(r"[\u4e00-\u9fff]+")
_WORD = re.compile(r"[\u4e00-\u9fffA-Za-z0-9.%]+")
# jieba's hidden Markov model for words it does not know copies its best path at every character, so a long
# stretch of unknown characters costs the square of its length. Search-mode cuts are made on pieces of at
# most this many characters of a chunk (a run between spaces and punctuation); no FAQ text, answer, passage or
# evaluation question has a chunk half as long (the longest has 45), so none is cut differently.
_JIEBA_PIECE = 100


class Analyzer:
    """Text → tokens: jieba search-mode words (with the domain dictionary) and character pairs."""

    def __init__(self, dictionary: Iterable[tuple[str, int | None, str | None]] = (),
                 synonyms: dict[str, str] | None = None) -> None:
        # Sharing the parsed main dictionary saves a second of start-up per index (content/tokenizer.py).
        self._jieba = with_main_dictionary()
        self.synonyms = {self.fold(variant): self.fold(canonical) for variant, canonical in (synonyms or {}).items()}
        for word, frequency, tag in dictionary:
            self._jieba.add_word(self.fold(word), frequency, tag)
        known = {self.fold(word) for word, _, _ in dictionary}
        # Variants and canonical terms become words of their own, so a synonym replaces a whole word and
        # never the inside of another one (收入党费 holds 入党, 不能参加 holds a variant of 请假).
        for word in (set(self.synonyms) | set(self.synonyms.values())) - known:
            self._jieba.add_word(word)
        self.homophones = HomophoneFixer({word: word for word in known | set(self.synonyms.values())} | self.synonyms,
                                         is_word=self._jieba.is_word, likelihood=self._jieba.likelihood)

    def freeze(self) -> None:
        """The index is built: keep jieba's word table in its compact form."""
        self._jieba.freeze()

    @staticmethod
    def fold(text: str) -> str:
        return _joined_verbs(to_mandarin(_spell_lone_digits(unicodedata.normalize("NFKC", text).lower().strip())))

    def canonical(self, text: str) -> str:
        return self.with_synonyms(self.homophones.fix(self.fold(text)))

    def with_synonyms(self, fixed: str) -> str:
        """A folded text with its slips fixed, each synonym replaced by its canonical term."""
        if not self.synonyms:
            return fixed
        return "".join(self.synonyms.get(word, word) for word in self._jieba.cut(fixed, HMM=False))

    def tokens(self, text: str, canonical: str | None = None) -> list[str]:
        """The canonical text's tokens, then those of the text as written that the canonical one lacks: a
        synonym adds its canonical term without taking the member's own words away ("交党费" keeps 交).
        canonical: the text's canonical form, if the caller has it already."""
        canonical = self.canonical(text) if canonical is None else canonical
        result = self._tokens_of(canonical)
        written = self.fold(text)
        if written != canonical:
            seen = set(result)
            result += [token for token in self._tokens_of(written) if token not in seen]
        return result

    def _tokens_of(self, text: str) -> list[str]:
        words = [word for chunk in _WORD.findall(text) for start in range(0, len(chunk), _JIEBA_PIECE)
                 for word in self._jieba.cut_for_search(chunk[start:start + _JIEBA_PIECE], HMM=True)]
        result = [word for word in words if word.strip() and word not in STOPWORDS
                  and not (len(word) == 1 and word in _PARTICLES)]
        for run in _CJK.findall(text):
            for start in range(len(run) - 1):
                pair = run[start:start + 2]
                if pair in _STOP_PAIRS or pair[0] in _FILLERS or pair[1] in _FILLERS \
                        or (pair[0] in _PARTICLES and pair[1] in _PARTICLES):
                    continue
                result.append("~" + pair)
        return result

    def words(self, text: str, canonical: str | None = None) -> list[str]:
        """The plain jieba words of text (after synonyms): for the out-of-domain check.
        canonical: the text's canonical form, if the caller has it already."""
        canonical = self.canonical(text) if canonical is None else canonical
        return [word for word in self._jieba.cut(canonical, HMM=False) if word.strip()]


def _weight(token: str) -> float:
    return PAIR_WEIGHT if token.startswith("~") else 1.0


def _logistic(features: tuple[float, ...]) -> float:
    score = ACCEPT_BIAS + sum(weight * value for weight, value in zip(ACCEPT_WEIGHTS, features, strict=True))
    return 1.0 / (1.0 + math.exp(-score))


# ---------------------------------------------------------------- the index


def _top(scores: np.ndarray, count: int) -> list[int]:
    """The items with the highest positive scores, best first."""
    count = min(count, scores.size)
    if count == 0:
        return []
    top = np.argpartition(-scores, count - 1)[:count]
    return [int(item) for item in top[np.argsort(-scores[top])] if scores[item] > 0]


class _Collection:
    """A BM25 index over texts, each belonging to one item (an FAQ entry or a passage)."""

    def __init__(self, texts: list[list[str]], owners: list[int], items: int,
                 token_sets: list[frozenset[str]] | None = None) -> None:
        """token_sets: each text's tokens as a set, when the caller has them already (shared, not copied)."""
        self.size = items
        self.owners = np.asarray(owners, dtype=np.int64)
        self.token_sets = token_sets if token_sets is not None else [frozenset(tokens) for tokens in texts]
        self.bm25 = Bm25Scores(texts) if texts else None
        # Texts are added item by item, so each item's texts are one contiguous run.
        self.starts = np.flatnonzero(np.r_[True, self.owners[1:] != self.owners[:-1]]) if len(owners) else \
            np.zeros(0, dtype=np.int64)

    def item_scores(self, query: list[str]) -> np.ndarray:
        """Each item's best text score (items with no texts do not occur)."""
        if self.bm25 is None:
            return np.zeros(0)
        ids = self.bm25.token_ids(query)
        if not ids:
            return np.zeros(self.size)
        scores = self.bm25.scores(ids)
        best = np.maximum.reduceat(scores, self.starts)
        full = np.zeros(self.size)
        full[self.owners[self.starts]] = best
        return full

    def overlaps(self, query: list[str]) -> np.ndarray:
        """For each text, how many of the query's distinct tokens it has (from the BM25 postings: one pass per
        token instead of a set intersection per text)."""
        counts = np.zeros(len(self.owners), dtype=np.int32)
        if self.bm25 is not None:
            for token_id in set(self.bm25.token_ids(query)):
                counts[self.bm25.texts_with(token_id)] += 1
        return counts

    def best_text(self, item: int, overlaps: np.ndarray) -> int:
        """Of an item's texts, the one whose tokens cover the query best (the first of equals); overlaps is
        self.overlaps(query)."""
        start = int(np.searchsorted(self.owners, item, side="left"))
        stop = int(np.searchsorted(self.owners, item, side="right"))
        return start + int(np.argmax(overlaps[start:stop]))


@dataclass
class _Candidate:
    """One FAQ entry or passage considered for a question, with the evidence for it."""

    key: str  # "f<number>" or "p<number>"
    bm25: float
    best_text: float  # confidence against its best single text
    texts: float  # share of the question's weight its texts cover together (FAQ only)
    confidence: float  # share covered by all its words, answer included
    rank: float = 0.0
    anchored: bool = True  # the question has one of the entry's anchor words (or it has none)
    margin: float = 0.0  # the entry classifier's margin for it


@dataclass
class Evidence:
    """What the search found for one question, before deciding."""

    query_set: set[str]
    total: float  # the question's weight
    margins: np.ndarray  # the entry classifier's margin for every entry
    scope: float  # the scope classifier's margin: below SCOPE_DECLINE, none of ours
    ours: bool  # speaks of this domain
    foreign: bool  # speaks of a topic the bot never answers
    faq: list[_Candidate]  # best first
    passages: list[_Candidate]

    @property
    def words(self) -> int:
        """How many words (not character pairs) the question has after stopwords."""
        return sum(1 for token in self.query_set if not token.startswith("~"))


class QaIndex:
    """The searchable form of one version of the content."""

    def __init__(self, content: Content, *, extra_passages: Iterable[Passage] = ()) -> None:
        self.content = content
        self.analyzer = Analyzer(content.dictionary, content.synonyms)
        self.faq = list(content.faq)
        self.passages = [*content.passages, *extra_passages]
        self.faq_by_id = {entry.id: entry for entry in self.faq}
        self.passage_by_id = {passage.id: passage for passage in self.passages}
        faq_texts, faq_owners, canonical_texts = [], [], []
        # Every text's tokens are new strings; equal ones are made one object, which the index's sets, BM25
        # vocabularies and counts then share (some 20 MB less for the shipped content, and still shared after
        # the pickle that carries the index from its build to the server).
        shared: dict[str, str] = {}

        def tokens_of(text: str, canonical: str | None = None) -> list[str]:
            return [shared.setdefault(token, token) for token in self.analyzer.tokens(text, canonical)]

        # A question that is word for word one of an entry's texts gets that entry: staff who add a phrasing
        # to fix a question expect exactly that question to be answered by it.
        self._verbatim: dict[str, int] = {}
        self._entry_texts: list[frozenset[str]] = []  # each entry's question and phrasings, together
        self._questions: list[frozenset[str]] = []  # each entry's standard question
        self._anchors: list[frozenset[str]] = []  # words most of an entry's texts use (党费 for the dues entries)
        self._entry_words: list[frozenset[str]] = []  # the same with its answer
        for number, entry in enumerate(self.faq):
            together: set[str] = set()
            uses: dict[str, int] = {}
            texts = list(dict.fromkeys((entry.question, *entry.phrasings)))
            for text in texts:
                self._verbatim.setdefault(normalize_question(self.analyzer.fold(text)), number)
                canonical = self.analyzer.canonical(text)
                tokens = tokens_of(text, canonical)
                together.update(tokens)
                faq_texts.append(tokens)
                canonical_texts.append(canonical)
                faq_owners.append(number)
                for token in set(tokens):
                    if not token.startswith("~"):
                        uses[token] = uses.get(token, 0) + 1
            self._anchors.append(frozenset(t for t, n in uses.items() if n >= ANCHOR_SHARE * len(texts)))
            self._entry_texts.append(frozenset(together))
            self._questions.append(frozenset(faq_texts[len(faq_texts) - len(texts)]))
            self._entry_words.append(frozenset(together | set(tokens_of(entry.answer))))
        passage_texts = [tokens_of(f"{p.title} {p.heading}\n{p.text}") for p in self.passages]
        self._faq = _Collection(faq_texts, faq_owners, len(self.faq))
        # Members' questions (scope.tsv), read as the search reads a question. The entry classifier learns from
        # those labelled with an entry how members put what it covers, beside the entry's own texts; the scope
        # classifier learns from all of them, in scope or not, beside every entry's texts.
        asked = []
        for question, label in content.scope:
            seen = clip_question(without_fillers(question))
            asked.append((seen, self.analyzer.canonical(seen), label))
        number_of = {entry.id: number for number, entry in enumerate(self.faq)}
        labelled = [(canonical, number_of[label]) for _, canonical, label in asked if label in number_of]
        self._classifier = EntryClassifier(canonical_texts + [canonical for canonical, _ in labelled],
                                           faq_owners + [number for _, number in labelled], len(self.faq))
        asked_tokens = [self.analyzer.tokens(seen, canonical) for seen, canonical, _ in asked]
        self._scope = ScopeClassifier(faq_texts + asked_tokens,
                                      [True] * len(faq_texts) + [label != OUT_OF_SCOPE_LABEL for _, _, label in asked])
        # An entry found by its answer's words alone ("八项义务" is in the answer, not the question).
        self._answers = _Collection([list(words) for words in self._entry_words], list(range(len(self.faq))),
                                    len(self.faq), token_sets=self._entry_words)
        self._passages = _Collection(passage_texts, list(range(len(self.passages))), len(self.passages))
        # The FAQ's document frequencies weigh query words: a word most questions share says little.
        self._texts = max(1, len(self.faq))
        entry_frequency: dict[str, int] = {}
        for words in self._entry_words:
            for token in words:
                entry_frequency[token] = entry_frequency.get(token, 0) + 1
        self._unseen_idf = self._idf(0) * UNSEEN_FACTOR
        # Every word of the entries' weight, worked out once: scoring one question asks for them thousands of times
        # (a question of several parts is scored part by part), and a text's own weight (a sum over its words)
        # never changes.
        self._weights = {token: _weight(token) * self._idf(count) for token, count in entry_frequency.items()}
        self._text_weights = [self._weight_of(words) for words in self._faq.token_sets]
        self._question_weights = [self._weight_of(words) for words in self._questions]
        fold = self.analyzer.canonical
        self._ood = frozenset(fold(word) for word in OUT_OF_DOMAIN)
        domain_words = {word for word, _, _ in content.dictionary} | set(content.synonyms) \
            | set(content.synonyms.values())
        # Both as written and folded ("政审" and 政治审查: jieba may cut 政审查 as 政|审查, so no synonym applies);
        # a variant ("领低保") may fold into an everyday word, which is no marker either way.
        words = domain_words | DOMAIN_MARKERS
        everyday = EVERYDAY_WORDS | {fold(word) for word in EVERYDAY_WORDS}
        self._markers = frozenset(word for word in set(words) | {fold(word) for word in words}
                                  if word not in everyday and fold(word) not in everyday)
        # Built: no word is added from now on, and jieba's table is kept compact (content/tokenizer.py).
        self.analyzer.freeze()

    def scope_tokens(self, question: str) -> list[str]:
        """A labelled question's tokens as the search will see it asked (fillers dropped, clipped)."""
        return self.analyzer.tokens(clip_question(without_fillers(question)))

    def _idf(self, frequency: int) -> float:
        return math.log(1 + (self._texts - frequency + 0.5) / (frequency + 0.5))

    def _token_weight(self, token: str) -> float:
        weight = self._weights.get(token)
        return weight if weight is not None else _weight(token) * self._unseen_idf

    def _weight_of(self, words: Iterable[str]) -> float:
        return sum(self._token_weight(token) for token in words)

    def _recall(self, query: set[str], total: float, words: frozenset[str]) -> float:
        """The share of the question's weight found among words."""
        return self._weight_of(query & words) / total if total else 0.0

    def _text_confidence(self, query: set[str], total: float, text: frozenset[str], own: float) -> float:
        """How well one text matches: the share of the question's weight it covers, blended with the share
        of its own weight (own) the question covers (so a long text that merely contains the question ranks
        lower)."""
        if not text:
            return 0.0
        covered = self._weight_of(query & text)
        return 0.75 * (covered / total if total else 0.0) + 0.25 * (covered / own if own else 0.0)

    def _faq_candidates(self, query: list[str], query_set: set[str], total: float,
                        margins: np.ndarray) -> list[_Candidate]:
        by_text = self._faq.item_scores(query)
        if by_text.size == 0:
            return []
        pool = set(_top(by_text, CANDIDATES)) | set(_top(self._answers.item_scores(query), CANDIDATES // 2))
        pool |= {int(item) for item in np.argsort(-margins)[:CLASSIFIER_CANDIDATES]}
        candidates = []
        overlaps = self._faq.overlaps(query)
        for item in pool:
            best = self._faq.best_text(item, overlaps) if by_text[item] > 0 else None
            # A question without any of the words that nearly every way of asking this entry uses is
            # probably about something else ("低保怎么申请" is not the dues entry for people on 低保).
            anchored = not self._anchors[item] or bool(query_set & self._anchors[item])
            factor = 1.0 if anchored else ANCHOR_PENALTY
            candidates.append(_Candidate(
                key=f"f{item}", bm25=float(by_text[item]),
                best_text=self._text_confidence(query_set, total, self._faq.token_sets[best], self._text_weights[best])
                if best is not None else 0.0,
                texts=self._recall(query_set, total, self._entry_texts[item]),
                confidence=factor * self._recall(query_set, total, self._entry_words[item]), anchored=anchored,
                margin=float(margins[item])))
        best_bm25 = max((c.bm25 for c in candidates), default=0.0) or 1.0
        single, together, everything, bm25 = RANK_WEIGHTS
        for c in candidates:
            number = int(c.key[1:])
            question = self._text_confidence(query_set, total, self._questions[number], self._question_weights[number])
            c.rank = single * c.best_text + together * c.texts + everything * c.confidence + bm25 * c.bm25 / best_bm25 \
                + QUESTION_WEIGHT * question + CLASSIFIER_WEIGHT * c.margin
        return sorted(candidates, key=lambda c: -c.rank)

    def _passage_candidates(self, query: list[str], query_set: set[str], total: float) -> list[_Candidate]:
        scores = self._passages.item_scores(query)
        candidates = []
        for item in _top(scores, MAX_SUGGESTIONS):
            confidence = PASSAGE_FACTOR * self._recall(query_set, total, self._passages.token_sets[item])
            candidates.append(_Candidate(key=f"p{item}", bm25=float(scores[item]), best_text=confidence,
                                         texts=confidence, confidence=confidence, rank=2 * confidence))
        return sorted(candidates, key=lambda c: -c.confidence)

    def domain_of(self, question: str, canonical: str | None = None) -> tuple[bool, bool]:
        """(speaks of this domain, speaks of a topic the bot never answers)."""
        text = self.analyzer.canonical(question) if canonical is None else canonical
        written = self.analyzer.fold(question)
        words = self.analyzer.words(question, text)
        foreign = any(word in self._ood for word in words) or any(len(w) >= 3 and w in text for w in self._ood)
        return any(marker in text or marker in written for marker in self._markers), foreign

    def evidence(self, question: str, canonical: str | None = None) -> Evidence:
        """Everything the search knows about a question before deciding (not for verbatim questions).
        canonical: the (clipped) question's canonical form, if the caller has it already."""
        question = clip_question(question)
        canonical = self.analyzer.canonical(question) if canonical is None else canonical
        query = self.analyzer.tokens(question, canonical)
        query_set = set(query)
        total = self._weight_of(query_set)
        margins = self._classifier.scores(canonical)
        ours, foreign = self.domain_of(question, canonical)
        return Evidence(query_set=query_set, total=total, margins=margins, scope=self._scope.margin(query),
                        ours=ours, foreign=foreign,
                        faq=self._faq_candidates(query, query_set, total, margins),
                        passages=self._passage_candidates(query, query_set, total))

    def search(self, question: str, *, answer_threshold: float = ANSWER_THRESHOLD,
               suggest_threshold: float = SUGGEST_THRESHOLD, today: date | None = None) -> Answer:
        """What to reply to a question: its first QUESTION_MAX_CHARS characters, before anything else is done
        to it (Answer.question is that part). Safe to call from worker threads: the index is only read, and
        the one cache it writes (the slip look-ups) tolerates it."""
        question = clip_question(question)
        today = today or date.today()
        parts = split_questions(question)
        if len(parts) > 1:
            # Several questions in one message (dictated ones often are): the first answered is the answer and
            # the others are offered — but only when at least two parts find different entries; otherwise the
            # message is read whole, as one question.
            answered: dict[str, tuple[str, Answer]] = {}
            results = [self._search_one(part, answer_threshold, suggest_threshold, today) for part in parts]
            for part, result in zip(parts, results):
                if result.status == ANSWERED and result.entry_id is not None:
                    answered.setdefault(result.entry_id, (part, result))
            if len(answered) > 1:
                (_, first), *rest = answered.values()
                first.question = question
                first.others = [Suggestion(result.entry_id, part) for part, result in rest]
                return self._whole_message_cues(question, first)
            whole = self._search_one(question, answer_threshold, suggest_threshold, today)
            first = results[0]
            if first.status == ANSWERED and first.confidence >= FIRST_PART_SURE and first.kind == "faq" \
                    and not first.computed and whole.entry_id != first.entry_id:
                # The first question is sure of its answer, and the rest, too short to be read alone (一般干几年),
                # pulled the whole message elsewhere: the first is answered, and what the whole found is offered.
                # Not a figure worked out from the first part alone: the rest may say what the figure was.
                first.question = question
                if whole.status == ANSWERED and whole.entry_id is not None:
                    first.others = [Suggestion(whole.entry_id, "，".join(parts[1:]))]
                return self._whole_message_cues(question, first)
            return whole
        return self._search_one(question, answer_threshold, suggest_threshold, today)

    def _whole_message_cues(self, question: str, first: Answer) -> Answer:
        """The first part's answer, unless a cue that alone names its entry is in the whole message: "我想问签到有啥
        规矩 结果我一发签到 它就当成我要签到了" asks in its first part and says why in the next."""
        if first.computed:
            return first
        chosen = self._redirected(question, first, first.ranked, redirects=WHOLE_MESSAGE_REDIRECTS)
        if chosen is not first:
            chosen.others = first.others
        return chosen

    def _search_one(self, asked: str, answer_threshold: float, suggest_threshold: float, today: date) -> Answer:
        bare = without_fillers(asked)
        result = self._search_bare(bare, answer_threshold, suggest_threshold, today)
        introduced = _SELF_INTRODUCTION.match(bare)
        said = result.entry_id if result.status == ANSWERED else \
            (result.suggestions[0].id if result.status == UNSURE and result.suggestions else None)
        if introduced is not None and said is not None and not result.computed:
            # "我是村支书兼村主任，这个助手给书记开了哪些命令": who the asker is can decide the answer alone (the entry
            # on holding both offices), or be all it is unsure about. When the introduction alone finds that same
            # entry and the rest finds another, the rest is the question.
            rest = bare[introduced.end():]
            alone = self._search_bare(introduced.group(1), answer_threshold, suggest_threshold, today)
            if alone.status == ANSWERED and alone.entry_id == said:
                instead = self._search_bare(rest, answer_threshold, suggest_threshold, today)
                # Only for another topic: an entry beside the one found (bot-help beside bot-secretary-commands for
                # "我是副书记，…哪些命令") means who is asking belongs to the question.
                if instead.status == ANSWERED and not self._tags(instead.entry_id) & self._tags(said):
                    result = instead
        result.question = asked
        return result

    def _search_bare(self, question: str, answer_threshold: float, suggest_threshold: float, today: date) -> Answer:
        # A dues question that states an income, a 党龄 question that gives a date: worked out (content/computed.py).
        folded = self.analyzer.fold(question)
        fixed = self.analyzer.homophones.fix(folded)
        # A slip may sit in the very words that make a question computable (申情书 for 申请书) or that decide how
        # (退修金 for 退休金: read as it came, a pension figure was worked out as a wage): the text with slips put
        # right is read first (no synonyms: the computations read the member's own words), then as it came.
        computed = compute_answer(fixed, today) if fixed != folded else None
        if computed is None:
            computed = compute_answer(question, today)
        if computed is not None:
            return self._computed_answer(question, computed)
        # With slips fixed and synonyms applied (正审 → 政治审查, 领低保 → 最低生活保障金): the patterns name both forms.
        canonical = self.analyzer.with_synonyms(fixed)
        if NEAR_MISSES.search(canonical):
            return Answer(question=question, status=OUT_OF_SCOPE, confidence=0.0)
        if LOCAL_FACTS.search(canonical):
            return Answer(question=question, status=OUT_OF_SCOPE, confidence=0.0, in_domain=True)
        verbatim = self._verbatim.get(normalize_question(folded))
        if verbatim is not None:
            result = self.answer_of(self.faq[verbatim].id, question=question, confidence=1.0)
            result.ranked = [(result.entry_id, 1.0)]
            return result
        found = self.evidence(question, canonical)
        faq, passages = found.faq, found.passages
        ranked = [(self._id(c.key), c.confidence) for c in (faq[:5] + passages)[:5]]
        if found.foreign and not found.ours:
            return Answer(question=question, status=OUT_OF_SCOPE, confidence=0.0, ranked=ranked)
        features = self.acceptance_features(found)
        probability = _logistic(features) if features is not None else 0.0
        result = self._choose(question, found, probability, answer_threshold, suggest_threshold)
        result.ranked = ranked
        result = self._after_vote(question, self._after_death(question, result, ranked), ranked)
        return self._redirected(question, result, ranked)

    def _redirected(self, question: str, result: Answer, ranked: list[tuple[str, float]],
                    redirects: tuple[Redirect, ...] = REDIRECTS) -> Answer:
        # The answer found, or the best candidate when none was good enough (the cue may say what it lacked).
        found = result.entry_id if result.status == ANSWERED else \
            next((item for item, confidence in ranked[:1] if confidence >= CUE_CONFIDENCE), None)
        entry = self.faq_by_id.get(found or "")
        if entry is None:
            return result
        for redirect in redirects:
            if not redirect.cue(question):
                continue
            if redirect.to_tag in entry.tags:
                if redirect.anywhere and result.status != ANSWERED:
                    # A cue that alone names its entry, and that entry is the best candidate: it answers.
                    chosen = self.answer_of(entry.id, question=question, confidence=result.confidence)
                    chosen.ranked = ranked
                    return chosen
                continue
            if not redirect.from_tags & set(entry.tags):
                continue
            targets = [item for item, confidence in ranked[:3] if confidence >= CUE_CONFIDENCE]
            if redirect.anywhere:
                targets += [faq.id for faq in self.faq]
            for item in targets:
                candidate = self.faq_by_id.get(item)
                if candidate is not None and redirect.to_tag in candidate.tags:
                    chosen = self.answer_of(item, question=question, confidence=result.confidence)
                    chosen.ranked = ranked
                    return chosen
        return result

    def _after_vote(self, question: str, result: Answer, ranked: list[tuple[str, float]]) -> Answer:
        if result.status not in (ANSWERED, UNSURE) or not VOTE_CUE.search(question):
            return result
        # The attendance entry answered, or offered among the choices (votes counted make the question the vote's).
        found = [result.entry_id] if result.status == ANSWERED else [choice.id for choice in result.suggestions]
        if not any(VOTE_FROM <= self._tags(item) for item in found):
            return result
        tags = ELECTION_TAGS if ELECTING.search(question) else RESOLUTION_TAGS
        for item, confidence in ranked[:3]:
            candidate = self.faq_by_id.get(item)
            if candidate is not None and tags & set(candidate.tags) and confidence >= CUE_CONFIDENCE:
                chosen = self.answer_of(item, question=question, confidence=result.confidence)
                chosen.ranked = ranked
                return chosen
        return result

    def _after_death(self, question: str, result: Answer, ranked: list[tuple[str, float]]) -> Answer:
        if result.status != ANSWERED or not DEATH_CUE.search(question):
            return result
        entry = self.faq_by_id.get(result.entry_id or "")
        if entry is None or DEATH_TAGS & set(entry.tags):
            return result
        for item, confidence in ranked[:3]:
            candidate = self.faq_by_id.get(item)
            if candidate is not None and DEATH_TAG in candidate.tags and confidence >= CUE_CONFIDENCE:
                chosen = self.answer_of(item, question=question, confidence=result.confidence)
                chosen.ranked = ranked
                return chosen
        return result

    def acceptance_features(self, found: Evidence) -> tuple[float, ...] | None:
        """The evidence for the best FAQ candidate, in ACCEPT_FEATURES order (None when there is none)."""
        if not found.faq:
            return None
        faq, total = found.faq, found.total
        best, runner_up = faq[0], (faq[1] if len(faq) > 1 else None)
        unseen = self._weight_of(t for t in found.query_set if t not in self._weights) / total \
            if total else 1.0
        words = found.words
        others = np.delete(found.margins, int(best.key[1:]))
        margin_lead = best.margin - float(others.max()) if others.size else MAX_LEAD
        return (best.confidence, best.best_text, best.texts,
                min(MAX_LEAD, best.rank - runner_up.rank) if runner_up else MAX_LEAD,
                runner_up.confidence if runner_up else 0.0, float(found.ours), float(found.foreign), unseen,
                float(best.anchored), math.log1p(best.bm25), math.log1p(words), best.margin,
                max(-MAX_LEAD, min(MAX_LEAD, margin_lead)))

    def _choose(self, question: str, found: Evidence, probability: float, answer_threshold: float,
                suggest_threshold: float) -> Answer:
        faq, passages = found.faq, found.passages
        in_domain = found.ours and not found.foreign
        best = faq[0] if faq else None
        runner_up = faq[1] if len(faq) > 1 else None
        # Two entries that both cover the question and rank side by side: the member chooses rather than we
        # guess. A topic named without a question ("党费的事": one or two words that several entries cover
        # completely) is offered its entries too, when we would not answer it.
        covered = runner_up is not None and runner_up.confidence >= RUNNER_UP_CONFIDENCE
        tied = covered and best.rank - runner_up.rank < AMBIGUOUS_MARGIN
        topic = covered and found.words <= TOPIC_WORDS and runner_up.confidence >= TOPIC_COVERAGE
        if found.scope < SCOPE_DECLINE:  # a near miss, however well some entry matches its words
            return Answer(question=question, status=OUT_OF_SCOPE, confidence=probability, in_domain=in_domain)
        # A topic named bare ("党费", "党费的事": no question word) is offered its entries even when one of them
        # looks likely: which one the member means, nothing in the message says.
        bare_topic = topic and in_domain and not _ASKS.search(question)
        if best is not None and probability >= answer_threshold and not tied and not bare_topic:
            return self.answer_of(self._id(best.key), question=question, confidence=probability)
        if in_domain and passages and passages[0].confidence >= PASSAGE_THRESHOLD \
                and (best is None or best.confidence < PASSAGE_THRESHOLD):
            # No FAQ entry covers the question; a document passage does.
            return self.answer_of(self._id(passages[0].key), question=question,
                                  confidence=passages[0].confidence)
        if best is not None and (probability >= suggest_threshold or ((tied or topic) and in_domain)):
            floor = best.confidence * 0.6
            choices = [c for c in faq[:MAX_SUGGESTIONS] if c.confidence >= floor]
            return Answer(question=question, status=UNSURE, confidence=probability,
                          suggestions=[self._suggestion(c.key) for c in choices])
        return Answer(question=question, status=OUT_OF_SCOPE, confidence=probability, in_domain=in_domain)

    def _computed_answer(self, question: str, computed: Computed) -> Answer:
        """A worked-out answer, standing for the entry of its topic (for evaluation and the console). It cites
        the article of that entry when it rests on the same document and names none itself (a self-employed
        member's dues: the entry's article 4)."""
        entry_id = next((item for item in computed.entry_ids if item in self.faq_by_id), None)
        source = self.content.sources.get(computed.source)
        entry = self.faq_by_id.get(entry_id or "")
        article = computed.article or (entry.article if entry is not None and entry.source == computed.source else "")
        return Answer(question=question, status=ANSWERED, confidence=1.0, answer=computed.text,
                      source=f"《{computed.source}》{article}", source_name=computed.source,
                      article=article, local=source is not None and source.local, entry_id=entry_id,
                      kind="faq", ranked=[(entry_id, 1.0)], computed=True)

    def _tags(self, item: str | None) -> set[str]:
        entry = self.faq_by_id.get(item or "")
        return set(entry.tags) if entry is not None else set()

    def _id(self, key: str) -> str:
        number = int(key[1:])
        return self.faq[number].id if key[0] == "f" else self.passages[number].id

    def _suggestion(self, key: str) -> Suggestion:
        number = int(key[1:])
        if key[0] == "f":
            entry = self.faq[number]
            return Suggestion(entry.id, entry.question)
        passage = self.passages[number]
        return Suggestion(passage.id, f"{passage.title}：{passage.heading}")

    def answer_of(self, item_id: str, *, question: str = "", confidence: float = 1.0) -> Answer | None:
        """The answer for an entry or passage by id (a suggestion the member picked)."""
        entry = self.faq_by_id.get(item_id)
        if entry is not None:
            return Answer(question=question, status=ANSWERED, confidence=confidence, answer=entry.answer,
                          source=f"《{entry.source}》{entry.article}", source_name=entry.source,
                          article=entry.article, local=entry.local,
                          entry_id=entry.id, kind="faq")
        passage = self.passage_by_id.get(item_id)
        if passage is not None:
            return Answer(question=question, status=ANSWERED, confidence=confidence, answer=passage.text,
                          source=f"《{passage.source}》", source_name=passage.source, local=self._source_is_local(passage.source)
                          and passage.source != "支部助手使用说明", entry_id=passage.id, kind="passage",
                          title=f"{passage.title}·{passage.heading}")
        return None

    def _source_is_local(self, name: str) -> bool:
        source = self.content.sources.get(name)
        return source is not None and source.local


# ---------------------------------------------------------------- the current index of a content folder


def _fingerprint(root: Path) -> tuple:
    files = [root / "sources.toml", root / "dictionary.txt", root / "synonyms.toml", root / "scope.tsv",
             *sorted((root / "faq").glob("*.toml")), *sorted((root / "docs").glob("*.md"))]
    stamp = []
    for path in files:
        try:
            status = path.stat()
        except OSError:
            continue
        stamp.append((str(path), status.st_mtime_ns, status.st_size))
    return tuple(stamp)


class IndexHolder:
    """The last good index of a content folder. A reload that fails keeps serving the previous one.

    An index is read from the cache file of its content (content/index_cache.py) when cache_dir is set and
    the file is current; otherwise it is built in a child process (content/index_build.py) and the file
    written. After each load the previous index is let go and the process's memory settled
    (content/memory.py): the new index frozen out of the collector's way, freed pages given back."""

    def __init__(self, root: Path, cache_dir: Path | None = None) -> None:
        self.root = root
        self.cache_dir = cache_dir
        self._index: QaIndex | None = None
        self._lock = threading.Lock()
        self.fingerprint: tuple = ()
        self.last_error: ContentError | None = None
        self.builds = 0  # indexes built rather than read from the cache (the tests count them)

    def load(self) -> QaIndex:
        """Load the index of the files now; raises ContentError (keeping the old index) on problems."""
        with self._lock:
            fingerprint = _fingerprint(self.root)
            try:
                index, how = self._obtain()
            except ContentError as error:
                self.last_error = error
                self.fingerprint = fingerprint  # do not retry the same broken files every poll
                raise
            previous, self._index = self._index, index
            self.fingerprint, self.last_error = fingerprint, None
            # The previous index goes now, or when the last search reading it ends: it has no reference cycles.
            del previous
            settle_memory()
            content = index.content
            log.info("content loaded from %s (%s): %d FAQ entries, %d documents (%d passages)",
                     self.root, how, len(content.faq), content.documents, len(content.passages))
            return index

    def _obtain(self) -> tuple[QaIndex, str]:
        from content import index_cache

        if self.cache_dir is None:
            with tempfile.TemporaryFile() as file:
                return self._build(file), "built"
        key = index_cache.content_key(self.root)
        path = index_cache.cache_file(self.cache_dir, self.root)
        with index_cache.exclusive(path):
            index = index_cache.read(path, key)
            if index is not None:
                return index, "from the cache"
            with index_cache.new_entry(path, key) as file:
                return self._build(file), "built"

    def _build(self, file) -> QaIndex:
        """Build into file (content/index_build.py) and read the index back from it: the served index is
        always one read back from a pickle, built just now or earlier, and never the pickle held in memory."""
        from content.index_build import build_into
        from content.index_cache import unpickle

        start = file.tell()
        build_into(self.root, file)  # raises ContentError
        self.builds += 1
        file.seek(start)
        return unpickle(file)

    def reload(self) -> bool:
        """Load again; on failure log the problems and keep the last good index. True if it loaded."""
        try:
            self.load()
            return True
        except ContentError as error:
            log.error("content reload failed; still serving the previous content. %s", error)
            return False

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def changed(self) -> bool:
        return _fingerprint(self.root) != self.fingerprint

    @property
    def index(self) -> QaIndex:
        if self._index is None:
            self.load()
        return self._index


_HOLDERS: dict[Path, IndexHolder] = {}
_HOLDERS_LOCK = threading.Lock()


def holder_for(root: Path | None = None, cache_dir: Path | None = None) -> IndexHolder:
    """The process's holder for a content folder (the package's own content by default). cache_dir, when
    given, is where its index is cached from now on (one process has one configuration)."""
    key = Path(root or DEFAULT_ROOT).resolve()
    with _HOLDERS_LOCK:
        holder = _HOLDERS.get(key)
        if holder is None:
            holder = _HOLDERS[key] = IndexHolder(key, cache_dir)
        elif cache_dir is not None:
            holder.cache_dir = cache_dir
        return holder
