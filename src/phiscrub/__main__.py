from phiscrub.cli import main

main()
