"""`flotilla new service`: a new service written from templates (`templates/`, package
data) and registered where the repository names its services (`generator.py`)."""
