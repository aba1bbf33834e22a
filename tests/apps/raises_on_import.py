raise RuntimeError("the app refuses to import")
