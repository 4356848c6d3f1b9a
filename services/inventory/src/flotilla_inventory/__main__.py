from flotilla_inventory.entrypoints.cli import main

main()
