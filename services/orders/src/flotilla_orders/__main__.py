from flotilla_orders.entrypoints.cli import main

main()
