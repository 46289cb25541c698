"""dg-tui, the terminal UI that talks to a running agent over its socket (never to S3).

Its modules (``dgagent_tui.`` and):

agent      the client layer: asyncio JSON-RPC client, reconnecting link, queue model
           (no textual import; a test checks it)
format     sizes, ratios, ages and event lines (pure functions)
app        DgApp and ``main()`` (the ``dg-tui`` console script)
cli        its command line (--socket, --read-only, --version)
folders    where screenshots and downloads go, and why one could not be written
screens    queue, browse, activity, detail, offline, help and the modals
widgets    the link bar, the table with vim keys, the filter input, the problems strip,
           bar charts, plain cells
footer     the key hints, fitted to the terminal's width
keys       the user's key map (``[keymap]`` in tui.toml, by binding id)
testing    FakeAgent: the agent's real socket server with scripted state, events and problems
"""
