from flotilla_cli.main import app

app()
