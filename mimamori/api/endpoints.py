from ninja import NinjaAPI

api = NinjaAPI(title="mimamori API", version="1", urls_namespace="api")
