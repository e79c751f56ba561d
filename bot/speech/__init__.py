"""Speech: members' voice messages turned into text by the engine the county chooses (WeChat no longer does it).

recognizer.py is the one interface; funasr.py, openai_compatible.py and cloud.py are the engines; choose.py
picks one from the settings.
"""
