"""The HTTP server around the app: uvicorn's options and its protocol with client limits."""
