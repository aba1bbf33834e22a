__version__: str
PROTOCOL: int

def run(argv: list[str]) -> int: ...
