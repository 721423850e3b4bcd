"""ragline as a service: a FastAPI app (`create_app`) over the same Python API as the CLI.

`ragline serve` runs it under uvicorn; `ragline keys create` makes the API keys it requires.
Needs the `server` extra: `pip install 'ragline[server]'`.
"""

from ragline.server.app import create_app
from ragline.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
