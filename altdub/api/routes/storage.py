"""What the caller's workspace stores, by kind (the storage lifecycle's figures)."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from altdub.api.deps import ContextDep, WorkspaceDep
from altdub.service import lifecycle

router = APIRouter(tags=["storage"])


class StorageUsageOut(BaseModel):
    inputs_bytes: int = Field(description="The runs' imported files (never removed by the lifecycle).")
    exports_bytes: int = Field(description="Exports kept.")
    exports: int = Field(description="How many exports are kept.")
    removed_exports: int = Field(description="Exports the lifecycle removed; asked again, each is made anew.")
    export_ttl_days: float | None = Field(description="ALTDUB_EXPORT_TTL_DAYS: the service's, for every workspace.")
    storage_budget_gb: float | None = Field(description="ALTDUB_STORAGE_BUDGET_GB: the whole service's budget.")


@router.get("/storage/usage", response_model=StorageUsageOut)
def storage_usage(context: ContextDep, workspace: WorkspaceDep) -> StorageUsageOut:
    """Bytes the workspace stores, inputs and exports apart, with the lifecycle's settings."""
    (mine,) = lifecycle.usage(context, workspace.id)
    return StorageUsageOut(
        inputs_bytes=mine.inputs_bytes,
        exports_bytes=mine.exports_bytes,
        exports=mine.exports,
        removed_exports=mine.removed_exports,
        export_ttl_days=context.settings.export_ttl_days,
        storage_budget_gb=context.settings.storage_budget_gb,
    )
