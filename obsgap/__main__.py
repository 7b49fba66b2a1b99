from obsgap.cli import main

main()
