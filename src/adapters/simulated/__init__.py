"""The simulated exchange: one matching engine (`engine`) for the mock profile, paper trading,
backtests and the loopback Binance test server; the async exchange around it (`exchange`), the
price paths that drive it (`price_source`) and its durable state (`state_store`). Import the
module you need: a backtest needs only the engine, not asyncio or SQLite."""
