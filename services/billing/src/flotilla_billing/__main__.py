from flotilla_billing.entrypoints.cli import main

main()
