"""`python -m bot` is the `tokenwise` command."""

from bot.cli import main

main()
