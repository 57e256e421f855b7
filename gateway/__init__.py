"""metrics-mesh gateway: REST, SSE, WebSocket, Prometheus exposition and the dashboard."""
