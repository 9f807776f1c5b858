"""Backend adapters: how the proxy reaches one upstream server or provider."""
