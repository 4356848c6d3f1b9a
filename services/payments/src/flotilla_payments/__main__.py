from flotilla_payments.entrypoints.cli import main

main()
