from flotilla_accounts.entrypoints.cli import main

main()
