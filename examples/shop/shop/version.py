"""The release's version string: the load generator reads it from the X-App-Version header."""

VERSION = "v1"
