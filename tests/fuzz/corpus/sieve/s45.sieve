require ["vacation", "fileinto"];
vacation "Away"; fileinto "Seen";