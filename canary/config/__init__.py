"""The router's configuration (TOML, flags, one error naming the key) and its secrets: the bottom layer every package may import."""
