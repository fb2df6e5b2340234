"""Everything that talks to Salesforce: connecting, classifying errors, retrying, reading and writing."""
