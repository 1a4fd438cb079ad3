"""Code that runs inside lighteval's own environment (r1exp/eval/lighteval_env.py), never in
r1exp's: `run.py` is started as a script by that env's python, and loads `open_r1_tasks.py`
next to it. Nothing in r1exp imports these modules; they import lighteval 0.13.
"""
