"""HTTP API (FastAPI) for monitoring-centre staff: /api/v1, WebSocket, /metrics."""
