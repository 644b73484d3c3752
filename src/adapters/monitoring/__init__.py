"""Telling the world how the bot is doing: the health and metrics endpoint, and alerts.

Nothing heavy is imported here: each module brings its own library (prometheus_client, aiohttp)
when the composition root asks for it, so a bot with neither endpoint nor alerts loads neither.
"""
