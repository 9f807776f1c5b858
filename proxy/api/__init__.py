"""HTTP routes: thin layers over the serving objects."""
