"""The app's server: Streamlit's ASGI app running ``app.py``, plus the ``/audio/ID`` route its player plays from
(``wavelist/web_player.py`` says why a route). ``wavelist app`` runs it; by hand:

    WAVELIST_TABLES=TABLES streamlit run wavelist/app_server.py
"""
from pathlib import Path

from streamlit.starlette import App

from wavelist.web_player import AUDIO_ROUTE

app = App(Path(__file__).with_name("app.py"), routes=[AUDIO_ROUTE])
