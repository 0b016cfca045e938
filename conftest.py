"""The napari dock widget's module imports napari and Qt and holds no doctest: it is not collected for doctests
(``tests/test_napari_widget.py`` drives it in a real viewer where the ``napari`` extra is installed), so that
collecting the suite does not pay napari's import."""

collect_ignore = ["src/neuradiff/napari/widget.py"]

try:  # property tests draw the same examples every run: a failure is reproducible, never a matter of luck
    from hypothesis import settings

    settings.register_profile("neuradiff", derandomize=True, database=None)
    settings.load_profile("neuradiff")
except ImportError:  # the test extra is not installed: nothing to seed
    pass
