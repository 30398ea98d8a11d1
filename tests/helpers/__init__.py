"""Models, data and drivers shared by the tests, one module per area
(``helpers.trainer``, ``helpers.inferencers``, ``helpers.models``, ...).
``tests/`` is on ``sys.path`` through ``pythonpath = tests`` in setup.cfg, so a
test imports them as ``from helpers.trainer import Linear``; no test module
imports another."""
