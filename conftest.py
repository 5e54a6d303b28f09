# test_verbose_logging.py is a demonstration script, not a test module.
collect_ignore = ["test_verbose_logging.py"]
