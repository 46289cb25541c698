"""dg-tui, the terminal UI that talks to a running agent over its socket (never to S3).

tui.agent      the client layer: asyncio JSON-RPC client, reconnecting link, queue model
               (no textual import; a test checks it)
tui.format     sizes, ratios, ages and event lines (pure functions)
tui.app        DgApp and ``main()`` (the ``dg-tui`` console script)
tui.cli        its command line (--socket, --read-only, --version)
tui.folders    where screenshots and downloads go, and why one could not be written
tui.screens    queue, browse, activity, detail, offline, help and the modals
tui.widgets    the link bar, the table with vim keys, the filter input, the problems strip,
               bar charts, plain cells
tui.footer     the key hints, fitted to the terminal's width
tui.keys       the user's key map (``[keymap]`` in tui.toml, by binding id)
tui.testing    FakeAgent: the agent's real socket server with scripted state, events and problems
"""
