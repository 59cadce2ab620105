# Data of every host in the web group (pyinfra's group_data/ directory, as the CLI reads it).
port = 8080
