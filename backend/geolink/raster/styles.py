"""Class colours and the QGIS styles (QML) written beside every output.

QML is plain XML; it is written here as text so the backend never needs QGIS. QGIS loads
`OUT.qml` beside `OUT.tif` or `OUT.gpkg` as the layer's default style.
"""

from __future__ import annotations

import colorsys
import html
import re
from pathlib import Path
from typing import Dict, List, Sequence

from ..atomic import OutputSet, PathLike

QML_HEAD = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n<qgis version=\"3.22.0\" " \
           "styleCategories=\"AllStyleCategories\">\n"


def quoteattr(value: str) -> str:
    """An XML attribute value in double quotes (QML is written, never parsed, here: no XML library needed)."""
    text = html.escape(str(value), quote=True)
    return '"' + text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;") + '"'


def hue_colour(i: int) -> str:
    """The i-th of a sequence of distinct '#rrggbb' colours (golden-angle hues)."""
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.55, 0.9)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def palette(n: int) -> List[str]:
    """n distinct colours for classes the card gives no colour."""
    return [hue_colour(i) for i in range(n)]


def hex_to_rgb(colour: str) -> tuple:
    """'#rrggbb' -> (r, g, b); anything else raises ValueError."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", colour.strip()):
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    c = colour.strip()[1:]
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def class_table(classes: Sequence) -> List[Dict[str, str]]:
    """[{name, color}] from a card's head classes (dicts or plain names), filling in missing names/colours."""
    fill = palette(len(classes))
    table = []
    for i, c in enumerate(classes):
        c = c if isinstance(c, dict) else {"name": str(c)}
        colour = str(c.get("color") or c.get("colour") or fill[i])
        if isinstance(c.get("color"), (list, tuple)):
            colour = "#" + "".join(f"{int(v):02x}" for v in c["color"][:3])
        try:
            hex_to_rgb(colour)
        except ValueError:
            colour = fill[i]
        table.append({"name": str(c.get("name") or f"class {i}"), "color": colour})
    return table


def paletted_qml(classes: Sequence[Dict[str, str]], band: int = 1) -> str:
    """A paletted (unique values) raster style: value i -> classes[i], labelled with its name."""
    entries = "\n".join(
        f'        <paletteEntry value="{i}" color={quoteattr(c["color"])} alpha="255" label={quoteattr(c["name"])}/>'
        for i, c in enumerate(classes))
    return (QML_HEAD + "  <pipe>\n"
            f'    <rasterrenderer type="paletted" band="{band}" opacity="1" alphaBand="-1" nodataColor="">\n'
            "      <rasterTransparency/>\n      <colorPalette>\n" + entries + "\n      </colorPalette>\n"
            "    </rasterrenderer>\n"
            '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
            '    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" invertColors="0"/>\n'
            '    <rasterresampler maxOversampling="2"/>\n  </pipe>\n  <blendMode>0</blendMode>\n</qgis>\n')


def rgb_qml() -> str:
    """Bands 1, 2, 3 as red, green, blue, with the values already stretched to 0-255."""
    channels = "".join(
        f"      <{name}Band>{i}</{name}Band>\n      <{name}ContrastEnhancement>\n"
        f"        <minValue>0</minValue>\n        <maxValue>255</maxValue>\n"
        f"        <algorithm>NoEnhancement</algorithm>\n      </{name}ContrastEnhancement>\n"
        for i, name in enumerate(("red", "green", "blue"), start=1))
    return (QML_HEAD + "  <pipe>\n"
            '    <rasterrenderer type="multibandcolor" opacity="1" alphaBand="-1" redBand="1" greenBand="2" '
            'blueBand="3" nodataColor="">\n      <rasterTransparency/>\n' + channels
            + "    </rasterrenderer>\n"
            '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
            '    <rasterresampler maxOversampling="2"/>\n  </pipe>\n  <blendMode>0</blendMode>\n</qgis>\n')


def _fill_symbol(name: str, colour: str) -> str:
    r, g, b = hex_to_rgb(colour)
    props = {"color": f"{r},{g},{b},170", "outline_color": "40,40,40,255", "outline_style": "solid",
             "outline_width": "0.26", "outline_width_unit": "MM", "style": "solid"}
    opts = "".join(f'          <prop k="{k}" v="{v}"/>\n' for k, v in props.items())
    return (f'      <symbol type="fill" name={quoteattr(name)} alpha="1" clip_to_extent="1" force_rhr="0">\n'
            '        <layer class="SimpleFill" enabled="1" locked="0" pass="0">\n' + opts +
            "        </layer>\n      </symbol>\n")


def categorized_qml(field: str, classes: Sequence[Dict[str, str]]) -> str:
    """A categorized polygon style on `field` (the class name), one category per class."""
    cats = "".join(f'      <category render="true" symbol="{i}" value={quoteattr(c["name"])} '
                   f'label={quoteattr(c["name"])}/>\n' for i, c in enumerate(classes))
    symbols = "".join(_fill_symbol(str(i), c["color"]) for i, c in enumerate(classes))
    return (QML_HEAD + f'  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} '
            'symbollevels="0" enableorderby="0" forceraster="0">\n'
            "    <categories>\n" + cats + "    </categories>\n    <symbols>\n" + symbols + "    </symbols>\n"
            "  </renderer-v2>\n  <blendMode>0</blendMode>\n  <featureBlendMode>0</featureBlendMode>\n</qgis>\n")


def write_qml(outputs: OutputSet, output: PathLike, text: str) -> str:
    """OUT.qml beside OUT.tif / OUT.gpkg, as a member of the output's set; returns the final path."""
    outputs.sidecar(output, ".qml").write_text(text, encoding="utf-8")
    return str(Path(output).with_suffix(".qml"))


SIMILARITY_RAMP = (  # "turbo": dark blue (unlike) to dark red (alike)
    "#30123b", "#4686fb", "#1ae4b6", "#a2fc3c", "#faba39", "#e4460a", "#7a0403")


def pseudocolor_qml(low: float, high: float, colours: Sequence[str], band: int = 1) -> str:
    """A single-band pseudocolour style: `colours` spread evenly from `low` to `high`, interpolated."""
    n = len(colours)
    items = "".join(
        f'          <item value="{low + (high - low) * i / (n - 1):.6g}" color={quoteattr(c)} alpha="255" '
        f'label="{low + (high - low) * i / (n - 1):.2f}"/>\n' for i, c in enumerate(colours))
    return (QML_HEAD + "  <pipe>\n"
            f'    <rasterrenderer type="singlebandpseudocolor" band="{band}" opacity="1" alphaBand="-1" '
            f'classificationMin="{low:.6g}" classificationMax="{high:.6g}" nodataColor="">\n'
            "      <rasterTransparency/>\n"
            f"      <rastershader>\n        <colorrampshader colorRampType=\"INTERPOLATED\" classificationMode=\"1\" "
            f'clip="0" minimumValue="{low:.6g}" maximumValue="{high:.6g}" labelPrecision="2">\n'
            + items + "        </colorrampshader>\n      </rastershader>\n    </rasterrenderer>\n"
            '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
            '    <rasterresampler maxOversampling="2"/>\n  </pipe>\n  <blendMode>0</blendMode>\n</qgis>\n')
