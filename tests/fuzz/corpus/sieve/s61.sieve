require ["reject", "vacation"];
vacation "v"; reject "x";