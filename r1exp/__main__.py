from r1exp.cli import main

main()
