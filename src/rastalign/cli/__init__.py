"""Command-line adapters: parse arguments into params, call one library function, print JSON."""
