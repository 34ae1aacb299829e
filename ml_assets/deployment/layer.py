"""What every deploy-layer asset of a pipeline shares: its group, code version and owners."""

from ml_assets.contract.declaration import PipelineDeclaration

DEPLOY = "deploy"
CODE_VERSION = "1"


def common(declaration: PipelineDeclaration) -> dict:
    return {
        "group_name": f"{declaration.prefix}_{DEPLOY}",
        "code_version": CODE_VERSION,
        "owners": declaration.owners,
    }
