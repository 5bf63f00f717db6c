"""The fetch stage: pointer notifications -> documents fetched from the vendor, landed as raw JSON.

One module per pointer vendor with the same names (`user_of`, `plan`, `fetch`), listed in
`registry`; `stage.fetch_notifications` runs them over the due notifications.
"""
