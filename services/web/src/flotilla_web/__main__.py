from flotilla_web.entrypoints.cli import main

main()
