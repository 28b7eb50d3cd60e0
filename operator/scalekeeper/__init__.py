"""scalekeeper: keeps every tier of an application sized to its load."""


def package_version() -> str:
    """The installed package's version (`scalekeeper --version`, the User-Agent of its API requests)."""
    from importlib import metadata

    try:
        return metadata.version("scalekeeper")
    except metadata.PackageNotFoundError:
        # Run from a source tree (PYTHONPATH=operator) that was never installed: no metadata to read.
        return "unknown (not installed)"
