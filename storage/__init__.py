"""Tables, the engine, and the queries every feature shares. Imports nothing from bot/ or handlers/."""
