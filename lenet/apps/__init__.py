"""Programs on top of a trained model: the drawing pad widget (`pad`), the prediction server (`serve`) and
the exporter (`export`). `static/` holds the pad's JavaScript and CSS, shared by the widget and the server's page."""

from pathlib import Path

STATIC = Path(__file__).with_name("static")
