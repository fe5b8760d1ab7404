"""bench/profiling.py's reading of py-spy's collapsed stacks: own and inclusive samples per function."""

from bench.profiling import aggregate, by_inclusive, function_of

RAW = """\
<module> (app.py:8);outer (app.py:7);inner (lib/x.py:4) 30
<module> (app.py:8);outer (app.py:7) 43
run (threading.py:982);walk (lib/x.py:9);walk (lib/x.py:12) 5
not a stack line
"""


def test_a_frame_is_named_by_its_file_and_function_without_the_line():
    assert function_of("handle (gunicorn/workers/gthread.py:279)") == "gunicorn/workers/gthread.py:handle"
    assert function_of("<lambda> (<string>)") == "<string>:<lambda>"


def test_own_is_the_innermost_frame_and_inclusive_counts_a_recursion_once():
    total, own, inclusive = aggregate(RAW)
    assert total == 78
    assert own == {"lib/x.py:inner": 30, "app.py:outer": 43, "lib/x.py:walk": 5}
    assert inclusive["app.py:outer"] == 73 and inclusive["lib/x.py:walk"] == 5
    assert by_inclusive(inclusive, 2) == ["app.py:<module>", "app.py:outer"]  # threading.py's frames left out
