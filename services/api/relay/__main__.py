from relay.main import main

main()
