from flotilla_auth.entrypoints.cli import main

main()
