"""A small FAQ for the tests that build, cache and reload a Q&A index of their own (two entries: quick to
build, and enough to tell one answer from another)."""

FAQ = '''
[[faq]]
id = "dues-farmer"
question = "农民党员交多少党费？"
phrasings = ["种地的党员党费怎么交", "农村党员党费标准", "务农党员每月交多少党费"]
answer = "农民党员每月交纳党费0.2元至1元。"
source = "关于中国共产党党费收缴、使用和管理的规定"
article = "第六条"
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
'''
