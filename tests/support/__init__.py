"""
The shared harness of pbx's tests: fakes, in-memory PBXs, helpers that run
the real daemon and real peers, and the checks of what those peers heard.
No module here holds tests.
"""
