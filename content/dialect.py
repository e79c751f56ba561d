"""Dialect function words in Mandarin: 系唔系 → 是不是, 点样 → 怎么样, 啷个 → 怎么, 莫得 → 没有.

Members write (and WeChat's voice input transcribes) the words of their own dialect. The topic words are
mostly Mandarin already (党费, 开会); what differs are the small words around them, which in Mandarin are
stopwords. Left as they are, a dialect word is a word no entry knows, and a question with several of them
looks as if it said something the content does not, which lowers the chance that it is answered.

Only words that are not also common Mandarin are listed: 要得 (可以 in the southwest) is left out because
Mandarin 要得到 would turn into nonsense, 系 alone because of 关系 and 联系.
"""

from __future__ import annotations

import re

DIALECT_WORDS = {
    # Cantonese
    "系唔系": "是不是", "係唔係": "是不是", "有冇": "有没有", "冇": "没有", "唔": "不", "喺": "在",
    "边度": "哪里", "點樣": "怎么样", "点样": "怎么样", "点解": "为什么", "嚟": "来", "乜嘢": "什么",
    "咩": "什么", "佢哋": "他们", "佢": "他", "嘅": "的", "咗": "了", "啲": "些", "几多": "多少",
    "边个": "谁", "而家": "现在", "畀": "给", "睇": "看", "嘢": "东西", "㗎": "", "喎": "",
    # Southwestern Mandarin
    "啷个": "怎么", "咋个": "怎么", "啥子": "什么", "么子": "什么", "莫得": "没有", "晓得": "知道",
    # Northeastern and northern
    "嘎哈": "干什么", "咋整": "怎么办", "中不中": "行不行", "啥玩意": "什么",
}
_PATTERN = re.compile("|".join(sorted(map(re.escape, DIALECT_WORDS), key=len, reverse=True)))


def to_mandarin(text: str) -> str:
    return _PATTERN.sub(lambda match: DIALECT_WORDS[match.group()], text)
