from relay_migrator.cli import main

main()
