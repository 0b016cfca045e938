"""Overlay text drawn with a scalable font that has the unit symbols."""

import numpy as np

from neuradiff.report.overlay import FONT, _draw_text


def _drawn(text: str, size: int = 20) -> np.ndarray:
    rgb = np.zeros((size + 12, 12 * size, 3), np.uint8)
    _draw_text(rgb, text, 2, 2, (255, 255, 255), size)
    return rgb[..., 0] == 255


def test_unit_symbols_have_their_own_glyphs():
    assert FONT.is_file()
    missing = _drawn("\U000f0000")  # a private-use code point no font draws
    for symbol, lookalike in (("Å", "A"), ("µ", "u")):
        glyph = _drawn(symbol)
        assert glyph.sum() > 20 and not np.array_equal(glyph, _drawn(lookalike))
        assert not np.array_equal(glyph, missing)


def test_text_grows_with_the_font_size():
    assert _drawn("20 nm", 40).sum() > 3 * _drawn("20 nm", 12).sum()
