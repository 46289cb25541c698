"""dg-tui, the terminal UI that talks to a running agent over its socket (never to S3).

tui.agent      the client layer: asyncio JSON-RPC client, reconnecting link, queue model
               (no textual import; a test checks it)
tui.format     sizes, ratios, ages and event lines (pure functions)
tui.app        DgApp and ``main()`` (the ``dg-tui`` console script)
tui.screens    queue, browse, activity, detail, offline, help and the modals
tui.widgets    the link bar, the table with vim keys, the filter input, plain cells
tui.keys       the user's key map (``[keymap]`` in tui.toml, by binding id)
tui.testing    FakeAgent: the agent's real socket server with scripted state and events
"""
