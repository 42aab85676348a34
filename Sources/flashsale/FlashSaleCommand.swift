import ArgumentParser

@main
struct FlashSaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flashsale",
        abstract: "FlashSale: a flash-sale reservation service that never oversells.",
        subcommands: [ServeCommand.self, TokenCommand.self, LoadCommand.self, LedgerCommand.self, OrdersCommand.self, KeygenCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
